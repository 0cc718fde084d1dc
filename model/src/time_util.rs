//! Business periods. Instants are stored in UTC; months and quarters are counted in Beijing
//! time (UTC+8), because a visit at 07:00 on the 1st in a village belongs to that month.
//!
//! Every conversion here is total: an instant the `time` crate can hold but that has no
//! Beijing-time counterpart (the last 8 hours of year 9999) is shown in UTC instead of
//! panicking. Records carry instants from phones, so range checks belong to validation
//! ([`check_business_instant`]), never to a panic deep in a formatter.

use time::{OffsetDateTime, UtcOffset};

/// China Standard Time.
pub const BEIJING: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// First calendar year (UTC) a record's business time (check-in, check-out, a fix, a photo)
/// may fall in. Years before it come from a phone whose clock was reset (1970 after a flat
/// battery) or from a forged record; the programme's records start long after it.
pub const FIRST_BUSINESS_YEAR: i32 = 2000;
/// Last calendar year (UTC) a record's business time may fall in. Later years are a wrong
/// clock or a forged record, and instants near the end of the `time` crate's range (year
/// 9999) cannot even be shifted to Beijing time.
pub const LAST_BUSINESS_YEAR: i32 = 2100;

/// `Err` with a reason when `instant` lies outside the accepted business years
/// ([`FIRST_BUSINESS_YEAR`]..=[`LAST_BUSINESS_YEAR`]).
pub fn check_business_instant(instant: OffsetDateTime) -> Result<(), String> {
    let year = instant
        .checked_to_offset(UtcOffset::UTC)
        .map_or(instant.year(), |utc| utc.year());
    if (FIRST_BUSINESS_YEAR..=LAST_BUSINESS_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(format!(
            "时间超出范围 (year {year} is outside {FIRST_BUSINESS_YEAR}..={LAST_BUSINESS_YEAR})"
        ))
    }
}

/// The instant in Beijing time; the very few instants that have no Beijing counterpart (the
/// last hours of year 9999) stay in their own offset rather than panic.
pub fn in_beijing(instant: OffsetDateTime) -> OffsetDateTime {
    instant.checked_to_offset(BEIJING).unwrap_or(instant)
}

/// YYYY-MM of an instant in Beijing time.
pub fn business_month(instant: OffsetDateTime) -> String {
    let local = in_beijing(instant);
    format!("{:04}-{:02}", local.year(), u8::from(local.month()))
}

/// `YYYY-MM-DD HH:MM` in Beijing time, the form officials read times in.
pub fn beijing_minutes(instant: OffsetDateTime) -> String {
    let local = in_beijing(instant);
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
    fn the_end_of_time_is_formatted_not_panicked_on() {
        let end = datetime!(9999-12-31 23:46:40 UTC);
        assert_eq!(business_month(end), "9999-12");
        assert_eq!(beijing_minutes(end), "9999-12-31 23:46");
        assert!(check_business_instant(end).is_err());
        assert!(check_business_instant(datetime!(1970-01-01 0:00 UTC)).is_err());
        assert!(check_business_instant(datetime!(2000-01-01 0:00 UTC)).is_ok());
        assert!(check_business_instant(datetime!(2100-12-31 23:59:59 UTC)).is_ok());
        assert!(check_business_instant(datetime!(2101-01-01 0:00 UTC)).is_err());
    }

    #[test]
    fn minutes_are_shown_in_beijing_time() {
        assert_eq!(
            beijing_minutes(datetime!(2026-10-31 16:05:59 UTC)),
            "2026-11-01 00:05"
        );
    }
}
