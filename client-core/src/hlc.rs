//! A minimal hybrid logical clock: `unix_ms << 16 | counter`. Each mutation gets a value
//! strictly greater than the previous one even when the wall clock stands still or jumps
//! back, and the clock is pulled forward by the server's time at every sync (DESIGN §4), so
//! a phone with a slow clock does not lose every last-writer-wins race.

/// Bits reserved for the logical counter below the milliseconds.
const COUNTER_BITS: u32 = 16;

/// The HLC value for wall-clock `unix_ms` with a zero counter.
pub fn from_unix_ms(unix_ms: i64) -> u64 {
    // Times before 1970 only happen with a broken clock; clamp rather than wrap.
    let unix_ms = u64::try_from(unix_ms).unwrap_or(0);
    unix_ms << COUNTER_BITS
}

/// The next HLC value after `last`, given the wall clock `now_unix_ms`.
pub fn next(last: u64, now_unix_ms: i64) -> u64 {
    from_unix_ms(now_unix_ms).max(last.saturating_add(1))
}

/// The clock after hearing the server's time: never moves backwards.
pub fn observe_server_time(last: u64, server_unix_ms: i64) -> u64 {
    last.max(from_unix_ms(server_unix_ms))
}

/// Milliseconds part of an HLC value.
pub fn unix_ms(hlc: u64) -> u64 {
    hlc >> COUNTER_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_grow_even_when_the_wall_clock_stands_still_or_goes_back() {
        let first = next(0, 1_700_000_000_000);
        let second = next(first, 1_700_000_000_000);
        let third = next(second, 1_600_000_000_000);
        assert!(first < second && second < third);
        assert_eq!(unix_ms(third), 1_700_000_000_000);
    }

    #[test]
    fn server_time_only_pulls_the_clock_forward() {
        let local = next(0, 1_700_000_000_000);
        assert_eq!(observe_server_time(local, 1_600_000_000_000), local);
        assert_eq!(
            unix_ms(observe_server_time(local, 1_800_000_000_000)),
            1_800_000_000_000
        );
    }
}
