-- 0008_ledger: the monthly ledger (月台账, DESIGN §6): month close (月结) with a frozen
-- snapshot of every household's slot, and the indexes the dashboard (工作台) needs to stay
-- fast for a township of 5,000 households with 12 months of visits.

-- One row per closed (township, month). Closing twice is refused by the primary key.
CREATE TABLE month_closures (
    township_id      TEXT NOT NULL,
    -- 'YYYY-MM', Beijing time.
    month            TEXT NOT NULL,
    closed_by        TEXT NOT NULL,
    closed_at        INTEGER NOT NULL,
    household_count  INTEGER NOT NULL,
    PRIMARY KEY (township_id, month)
);

-- The slot of every household of the township at close. The household's names, village
-- and primary cadre are copied as they were, so a later reassignment, rename or late visit
-- never changes a closed month's figures.
CREATE TABLE ledger_snapshots (
    township_id            TEXT NOT NULL,
    month                  TEXT NOT NULL,
    household_id           TEXT NOT NULL,
    head_name              TEXT NOT NULL,
    village_id             TEXT NOT NULL,
    village_name           TEXT NOT NULL,
    primary_cadre_user_id  TEXT,
    primary_cadre_name     TEXT,
    -- fieldsync_model::ledger::LockedOutcome: 'approved' or 'overdue'.
    outcome                TEXT NOT NULL CHECK (outcome IN ('approved', 'overdue')),
    visited_in_person      INTEGER NOT NULL,
    approved_in_person     INTEGER NOT NULL,
    PRIMARY KEY (township_id, month, household_id),
    FOREIGN KEY (township_id, month) REFERENCES month_closures (township_id, month)
);

-- The month's visits of an area: month first, then the household (joined to the area).
CREATE INDEX visits_by_month_household ON visits (business_month, household_id, state);
-- A household's primary cadre without scanning its secondary pairings.
CREATE INDEX pairings_primary_by_household ON pairings (household_id, cadre_user_id)
    WHERE active = 1 AND is_primary = 1;
-- A cadre's latest push (silent cadres): batches by device and time.
CREATE INDEX push_batches_by_device ON push_batches (device_id, received_at);
CREATE INDEX devices_by_user ON devices (user_id);
-- Cadres of a township.
CREATE INDEX users_by_area_role ON users (area_id, role);
