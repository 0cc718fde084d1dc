//! Business periods. Instants are stored in UTC; months and quarters are counted in Beijing
//! time (UTC+8), because a visit at 07:00 on the 1st in a village belongs to that month.

use time::{OffsetDateTime, UtcOffset};

/// China Standard Time.
pub const BEIJING: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// YYYY-MM of an instant in Beijing time.
pub fn business_month(instant: OffsetDateTime) -> String {
    let local = instant.to_offset(BEIJING);
    format!("{:04}-{:02}", local.year(), u8::from(local.month()))
}

/// `YYYY-MM-DD HH:MM` in Beijing time, the form officials read times in.
pub fn beijing_minutes(instant: OffsetDateTime) -> String {
    let local = instant.to_offset(BEIJING);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn months_turn_over_at_beijing_midnight() {
        assert_eq!(business_month(datetime!(2026-10-31 15:59 UTC)), "2026-10");
        assert_eq!(business_month(datetime!(2026-10-31 16:00 UTC)), "2026-11");
    }

    #[test]
    fn minutes_are_shown_in_beijing_time() {
        assert_eq!(
            beijing_minutes(datetime!(2026-10-31 16:05:59 UTC)),
            "2026-11-01 00:05"
        );
    }
}
