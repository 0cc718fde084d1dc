//! The phone's side of the hybrid logical clock (`fieldsync_model::hlc::Hlc`, 48-bit ms +
//! 16-bit counter). The stored value only moves forward: every outbox entry ticks it past
//! the wall clock and everything seen before, and every push response and checkpoint
//! observes the server's HLC, so a phone with a slow clock does not lose every
//! last-writer-wins race and a wall clock jumping back cannot reorder the outbox.
//!
//! The one exception is [`restamp_base`]: when the server refused the phone's clock as more
//! than 24 h ahead, the stamps already in the outbox can never be accepted. Once the wall
//! clock has been corrected they are stamped again, in seq order, from a sane base, because
//! keeping the broken stamps would wedge the outbox forever.

use fieldsync_model::hlc::{Hlc, REJECT_AHEAD_MILLIS, unix_millis};
use time::OffsetDateTime;

/// The stamp for a local change made at wall time `now`, after `last`.
pub fn stamp(last: Hlc, now: OffsetDateTime) -> Hlc {
    last.tick(unix_millis(now))
}

/// The clock after a server answer: the server's HLC when it sends one, otherwise its wall
/// time. Never moves backwards.
pub fn observe(last: Hlc, server_hlc: u64, server_time: Option<OffsetDateTime>) -> Hlc {
    let remote = if server_hlc != 0 {
        Hlc::from_u64(server_hlc)
    } else {
        server_time.map_or(Hlc::ZERO, |time| Hlc::from_parts(unix_millis(time), 0))
    };
    last.max(remote)
}

/// After the server refused this phone's clock (it then said its own time was
/// `server_ms`): the HLC to re-stamp the outbox from, or `None` while the wall clock still
/// looks wrong. The clock counts as fixed once the stored HLC is more than the server's
/// tolerance ahead of the current wall clock, i.e. the wall clock was moved back.
pub fn restamp_base(last: Hlc, now: OffsetDateTime, server_ms: u64) -> Option<Hlc> {
    let wall = unix_millis(now);
    let fixed = last.millis() > wall.saturating_add(REJECT_AHEAD_MILLIS);
    fixed.then(|| Hlc::from_parts(wall.max(server_ms), 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_wall_clock_jumping_back_never_moves_the_stamp_back() {
        let first = stamp(Hlc::ZERO, datetime!(2026-03-05 10:00 UTC));
        let second = stamp(first, datetime!(2026-03-05 09:00 UTC));
        assert!(second > first);
        assert_eq!(second.millis(), first.millis());
    }

    #[test]
    fn server_answers_only_pull_the_clock_forward() {
        let local = stamp(Hlc::ZERO, datetime!(2026-03-05 10:00 UTC));
        let behind = Hlc::from_parts(local.millis() - 1_000, 0);
        assert_eq!(observe(local, behind.as_u64(), None), local);
        let ahead = Hlc::from_parts(local.millis() + 60_000, 3);
        assert_eq!(observe(local, ahead.as_u64(), None), ahead);
        // An older server without an HLC: its wall time still counts.
        let later = datetime!(2026-03-05 11:00 UTC);
        assert_eq!(observe(local, 0, Some(later)).millis(), unix_millis(later));
    }

    #[test]
    fn the_outbox_is_restamped_only_once_the_wall_clock_was_corrected() {
        let server = datetime!(2026-03-05 10:00 UTC);
        let in_2099 = stamp(Hlc::ZERO, datetime!(2099-01-01 00:00 UTC));
        // Still set to 2099: nothing to do, the server will refuse again.
        assert_eq!(
            restamp_base(
                in_2099,
                datetime!(2099-01-01 00:05 UTC),
                unix_millis(server)
            ),
            None
        );
        let fixed = restamp_base(in_2099, server, unix_millis(server));
        assert_eq!(fixed, Some(Hlc::from_parts(unix_millis(server), 0)));
    }
}
