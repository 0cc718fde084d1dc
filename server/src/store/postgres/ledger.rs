//! The monthly ledger (月台账) on PostgreSQL: an area's facts for a month, month close (月结)
//! with its frozen snapshot, closures, cadres' last sync and the review queue's flag counts.
