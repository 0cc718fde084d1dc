//! Hybrid logical clock (HLC): 48 bits of unix milliseconds and a 16-bit counter in one
//! `u64`, so timestamps order like integers. Every replica's HLC only moves forward: a local
//! event ticks it past both the wall clock and everything seen before, and every sync
//! observes the server's time. Ties between devices break on `device_id` (see
//! [`crate::register::Stamp`]). Device wall-clock times stay as evidence, separate from
//! ordering.

use serde::{Deserialize, Serialize};

/// One HLC timestamp.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Hlc(u64);

/// Largest millisecond value that fits in 48 bits (year 10889).
const MAX_MILLIS: u64 = (1 << 48) - 1;

impl Hlc {
    /// The zero timestamp: before everything.
    pub const ZERO: Hlc = Hlc(0);

    pub const fn from_parts(millis: u64, counter: u16) -> Self {
        let millis = if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        };
        Hlc((millis << 16) | counter as u64)
    }

    pub const fn from_u64(packed: u64) -> Self {
        Hlc(packed)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub const fn millis(self) -> u64 {
        self.0 >> 16
    }

    pub const fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// The next timestamp for a local event at wall time `wall_millis`: later than `self`
    /// and not earlier than the wall clock. A wall clock that jumped backwards cannot move
    /// the HLC back.
    pub fn tick(self, wall_millis: u64) -> Hlc {
        // Readings past the 48-bit range (year 10889) are treated as the range's end, so
        // a garbage clock cannot wrap the order around.
        let wall_millis = wall_millis.min(MAX_MILLIS);
        if wall_millis > self.millis() {
            Hlc::from_parts(wall_millis, 0)
        } else {
            self.successor()
        }
    }

    /// Merge a timestamp received from elsewhere (e.g. the server's time at sync), then
    /// tick: the result is later than both inputs and not earlier than the wall clock.
    pub fn observe(self, remote: Hlc, wall_millis: u64) -> Hlc {
        self.max(remote).tick(wall_millis)
    }

    /// The smallest timestamp after `self`. When the counter is exhausted the millisecond
    /// part moves on, which keeps ordering strict at the cost of drifting 1 ms ahead. At the
    /// very end of the range it stays put rather than wrap to an earlier time.
    fn successor(self) -> Hlc {
        Hlc(self.0.saturating_add(1))
    }
}

/// HLCs this far ahead of the server's clock are accepted but pulled back to the server's
/// time, so one fast phone cannot win every future write (DESIGN §4: 5 minutes).
pub const CLAMP_AHEAD_MILLIS: u64 = 5 * 60 * 1000;
/// HLCs this far ahead mean the device clock is wrong; the batch is refused so the cadre
/// fixes the clock instead of corrupting the order of everyone's edits (DESIGN §4: 24 h).
pub const REJECT_AHEAD_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// What the server does with an incoming HLC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingHlc {
    /// Within tolerance; used as sent.
    Accepted(Hlc),
    /// Between 5 minutes and 24 hours ahead; pulled back to the server's time plus 5
    /// minutes, the most a device may lead.
    Clamped { sent: Hlc, used: Hlc },
    /// More than 24 hours ahead: the device clock is wrong.
    DeviceClockWrong { ahead_millis: u64 },
}

impl IncomingHlc {
    /// The HLC to store, unless the device clock is wrong.
    pub fn usable(self) -> Option<Hlc> {
        match self {
            Self::Accepted(hlc) | Self::Clamped { used: hlc, .. } => Some(hlc),
            Self::DeviceClockWrong { .. } => None,
        }
    }
}

/// Classify an incoming HLC against the server's wall clock.
pub fn check_incoming(sent: Hlc, server_wall_millis: u64) -> IncomingHlc {
    let ahead = sent.millis().saturating_sub(server_wall_millis);
    if ahead > REJECT_AHEAD_MILLIS {
        IncomingHlc::DeviceClockWrong {
            ahead_millis: ahead,
        }
    } else if ahead > CLAMP_AHEAD_MILLIS {
        // Clamp to the ceiling, not to "now": a device running 4:59 fast is accepted as
        // sent, so clamping a later edit of the same device to "now" would put it *behind*
        // the earlier one and silently lose it. The ceiling moves forward with the server's
        // clock, so a fast device's successive edits stay in order.
        let ceiling = server_wall_millis.saturating_add(CLAMP_AHEAD_MILLIS);
        IncomingHlc::Clamped {
            sent,
            used: Hlc::from_parts(ceiling, sent.counter()),
        }
    } else {
        IncomingHlc::Accepted(sent)
    }
}

/// Unix milliseconds of an instant, clamped to zero before 1970.
pub fn unix_millis(instant: time::OffsetDateTime) -> u64 {
    u64::try_from(instant.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_pack_into_an_ordered_integer() {
        let hlc = Hlc::from_parts(1_790_000_000_000, 7);
        assert_eq!((hlc.millis(), hlc.counter()), (1_790_000_000_000, 7));
        assert!(Hlc::from_parts(10, 65_535) < Hlc::from_parts(11, 0));
        assert_eq!(Hlc::from_u64(hlc.as_u64()), hlc);
    }

    #[test]
    fn tick_follows_the_wall_clock_forward_but_never_back() {
        let noon = 1_790_000_000_000;
        let start = Hlc::ZERO.tick(noon);
        assert_eq!(start, Hlc::from_parts(noon, 0));
        assert_eq!(start.tick(noon), Hlc::from_parts(noon, 1));
        // The phone's clock jumps back an hour mid-sync: order still moves forward.
        assert_eq!(start.tick(noon - 3_600_000), Hlc::from_parts(noon, 1));
        assert_eq!(start.tick(noon + 1), Hlc::from_parts(noon + 1, 0));
    }

    #[test]
    fn a_fast_devices_later_edit_is_never_clamped_behind_its_earlier_one() {
        let now = 1_790_000_000_000;
        let just_inside = Hlc::from_parts(now + CLAMP_AHEAD_MILLIS - 500, 0);
        let first = check_incoming(just_inside, now).usable();
        let second = check_incoming(
            Hlc::from_parts(now + 1_000 + CLAMP_AHEAD_MILLIS + 500, 0),
            now + 1_000,
        )
        .usable();
        assert!(first < second, "{first:?} then {second:?}");
    }

    #[test]
    fn an_exhausted_counter_carries_into_the_milliseconds() {
        let full = Hlc::from_parts(5, u16::MAX);
        assert_eq!(full.tick(0), Hlc::from_parts(6, 0));
    }

    #[test]
    fn the_end_of_the_range_never_wraps_back() {
        let end = Hlc::ZERO.tick(u64::MAX);
        assert_eq!(end.millis(), MAX_MILLIS);
        assert!(end.tick(u64::MAX) > end);
        let last = Hlc::from_u64(u64::MAX);
        assert_eq!(
            last.tick(u64::MAX),
            last,
            "saturates instead of wrapping to zero"
        );
    }

    #[test]
    fn observing_the_server_moves_a_slow_phone_forward() {
        let phone = Hlc::from_parts(1_000, 3);
        let server = Hlc::from_parts(90_000, 0);
        let merged = phone.observe(server, 1_500);
        assert!(merged > server && merged > phone);
        assert_eq!(merged, Hlc::from_parts(90_000, 1));
    }

    #[test]
    fn the_server_accepts_clamps_or_refuses_by_how_far_ahead_a_clock_is() {
        let now = 1_790_000_000_000;
        let hour = 3_600_000;
        assert_eq!(
            check_incoming(Hlc::from_parts(now - hour, 0), now),
            IncomingHlc::Accepted(Hlc::from_parts(now - hour, 0))
        );
        assert!(matches!(
            check_incoming(Hlc::from_parts(now + 60_000, 0), now),
            IncomingHlc::Accepted(_)
        ));
        assert_eq!(
            check_incoming(Hlc::from_parts(now + hour, 4), now),
            IncomingHlc::Clamped {
                sent: Hlc::from_parts(now + hour, 4),
                used: Hlc::from_parts(now + CLAMP_AHEAD_MILLIS, 4)
            }
        );
        assert!(matches!(
            check_incoming(Hlc::from_parts(now + 25 * hour, 0), now),
            IncomingHlc::DeviceClockWrong { .. }
        ));
        // A phone set to 2099.
        let year_2099 = 4_070_908_800_000;
        assert!(
            check_incoming(Hlc::from_parts(year_2099, 0), now)
                .usable()
                .is_none()
        );
    }
}
