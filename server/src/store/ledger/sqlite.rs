//! SQLite side of [`LedgerStore`], the monthly ledger (月台账): the facts of one area and
//! month, month close (月结) with its frozen snapshot, closures, cadres' last sync, the flag
//! counts of the review queue and the month's unvisited households. Each read is a handful of indexed queries over the whole area (never one
//! query per household), so the dashboard stays fast for 5,000 households.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, Role, VisitMode};
use fieldsync_model::ledger::{BusinessMonth, LockedOutcome, LockedSnapshot, check_close};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::store::ledger::{
    CadreLastSync, FlagCount, LedgerArea, LedgerFacts, LedgerHousehold, LedgerStore, LedgerVisit,
    LockedLedgerRow, MonthClosure, UnvisitedHousehold, closed_slots, flag_counts,
};
use crate::store::sqlite::{
    SqliteStore, corrupt, county_townships_sql, decode_flags, from_millis, from_sql_unsigned,
    parse_state, to_millis,
};
use crate::store::{StoreError, StoreResult};

/// SQL condition selecting the townships of `area` for a column holding a township id;
/// `?1` is the area id.
pub(in crate::store) fn townships_of(area: &LedgerArea, column: &str) -> String {
    match area {
        LedgerArea::Township(_) => format!("{column} = ?1"),
        LedgerArea::County(_) => format!("{column} IN ({})", county_townships_sql!()),
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

/// A ledger household from a row with its columns' names (live or from a snapshot).
fn ledger_household_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerHousehold> {
    Ok(LedgerHousehold {
        household_id: row.get("household_id")?,
        head_name: row.get("head_name")?,
        township_id: row.get("township_id")?,
        village_id: row.get("village_id")?,
        village_name: row.get("village_name")?,
        primary_cadre_user_id: row.get("primary_cadre_user_id")?,
        primary_cadre_name: row.get("primary_cadre_name")?,
    })
}

fn households_in(connection: &Connection, area: &LedgerArea) -> StoreResult<Vec<LedgerHousehold>> {
    let sql = format!(
        "SELECT h.household_id, h.head_name, h.township_id, h.village_id,
                COALESCE(a.name, h.village_id) AS village_name,
                p.cadre_user_id AS primary_cadre_user_id,
                u.display_name AS primary_cadre_name
         FROM households h
         LEFT JOIN areas a ON a.area_id = h.village_id
         LEFT JOIN pairings p
             ON p.household_id = h.household_id AND p.active = 1 AND p.is_primary = 1
         LEFT JOIN users u ON u.user_id = p.cadre_user_id
         WHERE {}
         ORDER BY h.township_id, h.village_id, h.head_name, h.household_id, p.cadre_user_id",
        townships_of(area, "h.township_id")
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params![area_id(area)], ledger_household_from_row)?;
    let mut households: Vec<LedgerHousehold> = Vec::new();
    for row in rows {
        let household = row?;
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

fn visits_in(
    connection: &Connection,
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
         WHERE v.business_month = ?2 AND v.state <> ?3 AND {}
         ORDER BY v.household_id, v.submitted_at, v.visit_id, v.revision",
        townships_of(area, "h.township_id")
    );
    let mut statement = connection.prepare(&sql)?;
    type Row = (String, u32, String, String, String, i32, String, i64, i64);
    let rows: Vec<Row> = statement
        .query_map(
            params![area_id(area), month, ReviewState::Superseded.as_str()],
            |row| {
                Ok((
                    row.get("visit_id")?,
                    row.get("revision")?,
                    row.get("household_id")?,
                    row.get("author_user_id")?,
                    row.get("author_name")?,
                    row.get("mode")?,
                    row.get("state")?,
                    row.get("checkin_at_ms")?,
                    row.get("submitted_at")?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(
            |(
                visit_id,
                revision,
                household_id,
                author_user_id,
                author_name,
                mode,
                state,
                checkin,
                submitted,
            )| {
                Ok(LedgerVisit {
                    mode: VisitMode::from_code(mode)
                        .ok_or_else(|| corrupt(format!("visit {visit_id}: mode {mode}")))?,
                    state: parse_state(&state)?,
                    checkin_at: from_millis(checkin)?,
                    submitted_at: from_millis(submitted)?,
                    visit_id,
                    revision,
                    household_id,
                    author_user_id,
                    author_name,
                })
            },
        )
        .collect()
}

fn closures_in(
    connection: &Connection,
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
         WHERE {} AND (?2 IS NULL OR c.month = ?2)
         ORDER BY c.month DESC, c.township_id",
        townships_of(area, "c.township_id")
    );
    let mut statement = connection.prepare(&sql)?;
    type Row = (String, String, String, String, String, i64, i64);
    let rows: Vec<Row> = statement
        .query_map(params![area_id(area), month], |row| {
            Ok((
                row.get("township_id")?,
                row.get("township_name")?,
                row.get("month")?,
                row.get("closed_by")?,
                row.get("closed_by_name")?,
                row.get("closed_at")?,
                row.get("household_count")?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(
            |(
                township_id,
                township_name,
                month,
                closed_by_user_id,
                closed_by_name,
                closed_at,
                count,
            )| {
                Ok(MonthClosure {
                    township_id,
                    township_name,
                    month,
                    closed_by_user_id,
                    closed_by_name,
                    closed_at: from_millis(closed_at)?,
                    household_count: from_sql_unsigned(count, "household count")?,
                })
            },
        )
        .collect()
}

fn locked_rows_in(
    connection: &Connection,
    area: &LedgerArea,
    month: &str,
) -> StoreResult<Vec<LockedLedgerRow>> {
    let sql = format!(
        "SELECT s.household_id, s.head_name, s.township_id, s.village_id, s.village_name,
                s.primary_cadre_user_id, s.primary_cadre_name, s.outcome,
                s.visited_in_person, s.approved_in_person
         FROM ledger_snapshots s
         WHERE s.month = ?2 AND {}
         ORDER BY s.township_id, s.village_id, s.head_name, s.household_id",
        townships_of(area, "s.township_id")
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params![area_id(area), month], |row| {
        Ok((
            ledger_household_from_row(row)?,
            row.get::<_, String>("outcome")?,
            row.get::<_, bool>("visited_in_person")?,
            row.get::<_, bool>("approved_in_person")?,
        ))
    })?;
    let mut locked = Vec::new();
    for row in rows {
        let (household, outcome, visited_in_person, approved_in_person) = row?;
        let outcome = match outcome.as_str() {
            "approved" => LockedOutcome::Approved,
            "overdue" => LockedOutcome::Overdue,
            other => return Err(corrupt(format!("ledger snapshot outcome {other:?}"))),
        };
        locked.push(LockedLedgerRow {
            month: month.to_owned(),
            household,
            snapshot: LockedSnapshot {
                outcome,
                visited_in_person,
                approved_in_person,
            },
        });
    }
    Ok(locked)
}

/// [`crate::store::Store::ledger_facts`].
fn ledger_facts(
    connection: &Connection,
    area: &LedgerArea,
    month: &str,
) -> StoreResult<LedgerFacts> {
    let closures = closures_in(connection, area, Some(month))?;
    let locked = if closures.is_empty() {
        Vec::new()
    } else {
        locked_rows_in(connection, area, month)?
    };
    Ok(LedgerFacts {
        households: households_in(connection, area)?,
        visits: visits_in(connection, area, month)?,
        closures,
        locked,
    })
}

/// [`crate::store::Store::close_month`].
fn close_month(
    transaction: &Transaction<'_>,
    township_id: &str,
    month: &str,
    closed_by_user_id: &str,
    closed_at: OffsetDateTime,
) -> StoreResult<MonthClosure> {
    let business_month =
        BusinessMonth::parse(month).map_err(|error| invalid_month(error.to_string()))?;
    check_close(business_month, closed_at).map_err(|error| invalid_month(error.to_string()))?;
    let is_township: bool = transaction
        .query_row(
            "SELECT 1 FROM areas WHERE area_id = ?1 AND level = 'township'",
            params![township_id],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !is_township {
        return Err(StoreError::NotFound(format!("township {township_id}")));
    }
    let already: Option<i64> = transaction
        .query_row(
            "SELECT closed_at FROM month_closures WHERE township_id = ?1 AND month = ?2",
            params![township_id, month],
            |row| row.get("closed_at"),
        )
        .optional()?;
    if already.is_some() {
        return Err(StoreError::Conflict(format!(
            "{month} 已月结 (township {township_id} already closed {month})"
        )));
    }

    let area = LedgerArea::Township(township_id.to_owned());
    let households = households_in(transaction, &area)?;
    let slots = closed_slots(
        business_month,
        &households,
        visits_in(transaction, &area, month)?,
        closed_at,
    )?;
    let closed_at_millis = to_millis(closed_at)?;
    transaction.execute(
        "INSERT INTO month_closures (township_id, month, closed_by, closed_at, household_count)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            township_id,
            month,
            closed_by_user_id,
            closed_at_millis,
            households.len() as i64
        ],
    )?;
    let mut insert = transaction.prepare(
        "INSERT INTO ledger_snapshots (township_id, month, household_id, head_name, village_id,
             village_name, primary_cadre_user_id, primary_cadre_name, outcome,
             visited_in_person, approved_in_person)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for slot in &slots {
        let household = slot.household;
        insert.execute(params![
            township_id,
            month,
            household.household_id,
            household.head_name,
            household.village_id,
            household.village_name,
            household.primary_cadre_user_id,
            household.primary_cadre_name,
            slot.outcome,
            slot.visited_in_person,
            slot.approved_in_person,
        ])?;
    }
    drop(insert);
    closures_in(transaction, &area, Some(month))?
        .into_iter()
        .next()
        .ok_or_else(|| corrupt("a closure just written is missing"))
}

/// [`crate::store::Store::month_closures`].
fn month_closures(connection: &Connection, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>> {
    closures_in(connection, area, None)
}

/// [`crate::store::Store::cadre_last_syncs`]. A sync is a push batch (received time) or a
/// heartbeat (sent with every push and pull) from any device of the cadre; a console login
/// is not a sync.
fn cadre_last_syncs(connection: &Connection, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>> {
    let sql = format!(
        "SELECT u.user_id, u.display_name, u.area_id,
                MAX(COALESCE((SELECT MAX(b.received_at) FROM devices d
                              JOIN push_batches b ON b.device_id = d.device_id
                              WHERE d.user_id = u.user_id), 0),
                    COALESCE((SELECT MAX(hb.server_time) FROM device_heartbeats hb
                              WHERE hb.user_id = u.user_id), 0)) AS last_sync_ms
         FROM users u
         WHERE u.role = ?2 AND {}
         ORDER BY u.display_name, u.user_id",
        townships_of(area, "u.area_id")
    );
    let mut statement = connection.prepare(&sql)?;
    let rows: Vec<(String, String, String, i64)> = statement
        .query_map(params![area_id(area), Role::Cadre.as_str()], |row| {
            Ok((
                row.get("user_id")?,
                row.get("display_name")?,
                row.get("area_id")?,
                row.get("last_sync_ms")?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(user_id, display_name, township_id, last)| {
            Ok(CadreLastSync {
                user_id,
                display_name,
                township_id,
                last_sync_at: (last > 0).then(|| from_millis(last)).transpose()?,
            })
        })
        .collect()
}

/// [`crate::store::Store::queue_flag_counts`].
fn queue_flag_counts(connection: &Connection, area: &LedgerArea) -> StoreResult<Vec<FlagCount>> {
    // The queue shows a visit's latest revision; a submitted revision is the latest open
    // one (a newer revision supersedes it), so state = submitted selects queue items.
    let sql = format!(
        "SELECT v.visit_id, v.evidence_flags
         FROM visits v
         JOIN households h ON h.household_id = v.household_id
         WHERE v.state = ?2 AND v.evidence_flags IS NOT NULL AND {}",
        townships_of(area, "h.township_id")
    );
    let mut statement = connection.prepare(&sql)?;
    let rows: Vec<(String, String)> = statement
        .query_map(
            params![area_id(area), ReviewState::Submitted.as_str()],
            |row| Ok((row.get("visit_id")?, row.get("evidence_flags")?)),
        )?
        .collect::<Result<_, _>>()?;
    // Leniently, like every other reader: a flag written by a newer server is skipped.
    let visits = rows
        .into_iter()
        .map(|(visit_id, flags): (String, String)| Ok((visit_id, decode_flags(&flags)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(flag_counts(visits))
}

fn unvisited_households_in(
    connection: &Connection,
    township_id: &str,
    month: &str,
) -> StoreResult<Vec<UnvisitedHousehold>> {
    let mut cadre_names: HashMap<String, Vec<String>> = HashMap::new();
    {
        let mut statement = connection.prepare(
            "SELECT p.household_id, COALESCE(u.display_name, p.cadre_user_id) AS cadre_name
             FROM pairings p
             JOIN households h ON h.household_id = p.household_id
             LEFT JOIN users u ON u.user_id = p.cadre_user_id
             WHERE h.township_id = ?1 AND p.active = 1
             ORDER BY p.is_primary DESC, u.display_name, p.cadre_user_id",
        )?;
        let rows = statement.query_map(params![township_id], |row| {
            Ok((
                row.get::<_, String>("household_id")?,
                row.get::<_, String>("cadre_name")?,
            ))
        })?;
        for row in rows {
            let (household_id, name) = row?;
            cadre_names.entry(household_id).or_default().push(name);
        }
    }
    let mut statement = connection.prepare(
        "SELECT h.household_id, h.head_name, h.village_id,
                COALESCE(a.name, json_extract(h.card, '$.village_name'), '') AS village_name
         FROM households h
         LEFT JOIN areas a ON a.area_id = h.village_id
         WHERE h.township_id = ?1
           AND NOT EXISTS (
               SELECT 1 FROM visits v
               WHERE v.household_id = h.household_id AND v.business_month = ?2
                 AND v.mode = ?3 AND v.state IN (?4, ?5))
         ORDER BY h.village_id, h.head_name, h.household_id",
    )?;
    let rows = statement.query_map(
        params![
            township_id,
            month,
            VisitMode::InPerson.code(),
            ReviewState::Submitted.as_str(),
            ReviewState::Approved.as_str()
        ],
        |row| {
            Ok((
                row.get::<_, String>("household_id")?,
                row.get::<_, String>("head_name")?,
                row.get::<_, String>("village_id")?,
                row.get::<_, String>("village_name")?,
            ))
        },
    )?;
    let mut households = Vec::new();
    for row in rows {
        let (household_id, head_name, village_id, village_name) = row?;
        households.push(UnvisitedHousehold {
            cadre_names: cadre_names.remove(&household_id).unwrap_or_default(),
            household_id,
            head_name,
            village_id,
            village_name,
        });
    }
    Ok(households)
}

#[async_trait::async_trait]
impl LedgerStore for SqliteStore {
    async fn unvisited_households(
        &self,
        township_id: &str,
        month: &str,
    ) -> StoreResult<Vec<UnvisitedHousehold>> {
        let township_id = township_id.to_owned();
        let month = month.to_owned();
        self.read(move |connection| unvisited_households_in(connection, &township_id, &month))
            .await
    }

    async fn ledger_facts(&self, area: &LedgerArea, month: &str) -> StoreResult<LedgerFacts> {
        let area = area.clone();
        let month = month.to_owned();
        self.read(move |connection| ledger_facts(connection, &area, &month))
            .await
    }

    async fn close_month(
        &self,
        township_id: &str,
        month: &str,
        closed_by_user_id: &str,
        closed_at: OffsetDateTime,
    ) -> StoreResult<MonthClosure> {
        let (township_id, month, closed_by_user_id) = (
            township_id.to_owned(),
            month.to_owned(),
            closed_by_user_id.to_owned(),
        );
        self.write(move |transaction| {
            close_month(
                transaction,
                &township_id,
                &month,
                &closed_by_user_id,
                closed_at,
            )
        })
        .await
    }

    async fn month_closures(&self, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>> {
        let area = area.clone();
        self.read(move |connection| month_closures(connection, &area))
            .await
    }

    async fn cadre_last_syncs(&self, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>> {
        let area = area.clone();
        self.read(move |connection| cadre_last_syncs(connection, &area))
            .await
    }

    async fn queue_flag_counts(&self, area: &LedgerArea) -> StoreResult<Vec<FlagCount>> {
        let area = area.clone();
        self.read(move |connection| queue_flag_counts(connection, &area))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::sealed::PiiCipher;

    /// A township of 5,000 households with 12 months of visits (one per household and
    /// month), written with plain SQL: the ledger reads of one month must use the indexes
    /// (no scan of every visit) and stay well inside the dashboard's 200 ms budget.
    #[tokio::test]
    async fn ledger_reads_of_a_large_township_use_indexes() {
        let directory = tempfile::TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        drop(SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate"));
        let mut connection = Connection::open(&path).expect("open");
        let transaction = connection.transaction().expect("transaction");
        transaction
            .execute_batch(
                "INSERT INTO areas (area_id, name, level, parent_id) VALUES
                     ('c', '县', 'county', NULL), ('t', '镇', 'township', 'c'),
                     ('t2', '镇二', 'township', 'c');
                 INSERT INTO users (user_id, username, display_name, password_hash, role, area_id)
                     VALUES ('u', 'u', '干部', '', 'cadre', 't');",
            )
            .expect("areas");
        for household in 0..5_000 {
            let id = format!("h{household:05}");
            transaction
                .execute(
                    "INSERT INTO households (household_id, township_id, village_id, head_name, card)
                     VALUES (?1, ?2, ?3, ?1, '{}')",
                    params![id, if household % 10 == 0 { "t2" } else { "t" }, format!("v{}", household % 20)],
                )
                .expect("household");
            transaction
                .execute(
                    "INSERT INTO pairings (cadre_user_id, household_id, is_primary) VALUES ('u', ?1, 1)",
                    params![id],
                )
                .expect("pairing");
            for month in 1..=12 {
                transaction
                    .execute(
                        "INSERT INTO visits (visit_id, revision, household_id, author_user_id,
                             device_id, body, content_hash, state, mode, business_month,
                             submitted_at, checkin_at_ms)
                         VALUES (?1, 1, ?2, 'u', 'd',
                             '{\"checkin_at\":\"2025-06-10T02:00:00Z\"}', '', 'approved', 1, ?3, 0,
                             1749520800000)",
                        params![format!("{id}-{month}"), id, format!("2025-{month:02}")],
                    )
                    .expect("visit");
            }
        }
        transaction.commit().expect("commit");

        let area = LedgerArea::Township("t".into());
        let plan: Vec<String> = connection
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT v.visit_id FROM visits v
                 JOIN households h ON h.household_id = v.household_id
                 WHERE v.business_month = ?2 AND v.state <> 'superseded' AND {}",
                townships_of(&area, "h.township_id")
            ))
            .expect("plan")
            .query_map(params!["t", "2025-06"], |row| {
                row.get::<_, String>("detail")
            })
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN v")),
            "visits are read through an index: {plan:?}"
        );
        let started = std::time::Instant::now();
        let facts = ledger_facts(&connection, &area, "2025-06").expect("facts");
        let elapsed = started.elapsed();
        assert_eq!(facts.households.len(), 4_500);
        assert_eq!(facts.visits.len(), 4_500);
        println!("ledger_facts for 4,500 households: {elapsed:?} ({plan:?})");
    }
}
