//! Monthly ledger (月台账): one slot per (household, business month), the state machine it
//! follows and the 入户率 counts built from it (DESIGN §6, domain.md §2.3 and §3.1).
//!
//! A slot moves `due → submitted → approved | returned → (re)submitted …`; it becomes
//! `overdue` once its month has ended (Beijing time) without an APPROVED IN-PERSON (入户)
//! visit, and `locked` when the township closes the month (月结). Phone or WeChat visits
//! with an exception reason are stored and listed but never count toward the in-person rate
//! (DESIGN §5).
//!
//! The month of a visit is the Beijing month of its own check-in time, never of the time it
//! reached the server: a visit recorded offline on the 31st and synced on the 2nd belongs to
//! the 31st's month.
//!
//! Month close takes a snapshot of every slot ([`LockedSnapshot`]); from then on the slot
//! shows the snapshot, so locked figures never change. A visit of a closed month that
//! reaches the server after the close is still stored (nothing a cadre records is ever lost)
//! and is shown as 逾期补报 (late after close, [`is_late_after_close`]), but it does not
//! change the snapshot.
//!
//! [`derive_slot`] is the authority: it computes a slot from the facts (every visit of the
//! month as its latest revision, the lock, the time now). [`SlotState::on`] documents the
//! same machine as single-event transitions, for one visit at a time.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::codes::{ReviewState, VisitMode};
use crate::time_util::BEIJING;

/// A business month (YYYY-MM), counted in Beijing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BusinessMonth {
    year: i32,
    month: Month,
}

/// Why a month text or a month close was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The text is not a `YYYY-MM` month.
    #[error("月份格式应为 YYYY-MM，例如 2026-03 (month must be YYYY-MM): {0:?}")]
    InvalidMonth(String),
    /// The month has not ended yet (current or future month): it cannot be closed.
    #[error("{month} 尚未结束，不能月结 (month {month} has not ended yet)")]
    MonthNotEnded { month: String },
}

impl BusinessMonth {
    /// Parse `YYYY-MM` (four-digit year 2000–2999 is plenty for this system; months 01–12).
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let invalid = || LedgerError::InvalidMonth(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' {
            return Err(invalid());
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &text[range];
            part.bytes()
                .all(|byte| byte.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let year = digits(0..4).ok_or_else(invalid)?;
        let month = digits(5..7).ok_or_else(invalid)?;
        if !(2000..=2999).contains(&year) {
            return Err(invalid());
        }
        let month = u8::try_from(month)
            .ok()
            .and_then(|month| Month::try_from(month).ok())
            .ok_or_else(invalid)?;
        Ok(Self {
            year: year as i32,
            month,
        })
    }

    /// The Beijing month an instant falls in.
    pub fn of(instant: OffsetDateTime) -> Self {
        let local = crate::time_util::in_beijing(instant);
        Self {
            year: local.year(),
            month: local.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    /// 1–12.
    pub fn month_number(self) -> u8 {
        u8::from(self.month)
    }

    /// The month before.
    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self {
                year: self.year - 1,
                month: Month::December,
            },
            other => Self {
                year: self.year,
                month: other.previous(),
            },
        }
    }

    /// The month after.
    pub fn next(self) -> Self {
        match self.month {
            Month::December => Self {
                year: self.year + 1,
                month: Month::January,
            },
            other => Self {
                year: self.year,
                month: other.next(),
            },
        }
    }

    /// 00:00 Beijing time on the 1st, as an instant.
    pub fn start(self) -> OffsetDateTime {
        // The 1st of a valid month always exists; the fallback is unreachable.
        let first = Date::from_calendar_date(self.year, self.month, 1).unwrap_or(Date::MIN);
        PrimitiveDateTime::new(first, Time::MIDNIGHT).assume_offset(BEIJING)
    }

    /// The first instant after the month (00:00 Beijing on the 1st of the next month).
    pub fn end(self) -> OffsetDateTime {
        self.next().start()
    }

    /// True once the month is over at `now` (Beijing time).
    pub fn has_ended(self, now: OffsetDateTime) -> bool {
        now >= self.end()
    }

    /// "2026年3月", how officials write a month.
    pub fn label_zh(self) -> String {
        format!("{}年{}月", self.year, u8::from(self.month))
    }
}

impl std::fmt::Display for BusinessMonth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

/// What a locked slot was at close: the month had ended, so it was approved or overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockedOutcome {
    Approved,
    Overdue,
}

/// The state of one (household, month) slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "at_close")]
pub enum SlotState {
    /// 待走访: the month is running and no in-person visit is waiting or approved.
    Due,
    /// 待审核: an in-person visit waits for review.
    Submitted,
    /// 已退回: the in-person visit was returned and not re-submitted yet.
    Returned,
    /// 已通过: at least one in-person visit was approved.
    Approved,
    /// 逾期: the month ended without an approved in-person visit.
    Overdue,
    /// 已月结: the township closed the month; the outcome is frozen.
    Locked(LockedOutcome),
}

/// One event of a slot's life, for [`SlotState::on`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotEvent {
    /// An in-person visit (or its re-submission) reached the server.
    InPersonSubmitted,
    /// The reviewer returned the waiting in-person visit.
    InPersonReturned,
    /// The reviewer approved the waiting in-person visit.
    InPersonApproved,
    /// The month ended (00:00 Beijing on the 1st of the next month).
    MonthEnded,
    /// The township closed the month.
    MonthClosed,
}

/// A transition the machine does not have, e.g. returning a visit that nobody submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("slot in state {from:?} cannot take {event:?}")]
pub struct TransitionRefused {
    pub from: SlotState,
    pub event: SlotEvent,
}

impl SlotState {
    /// The next state after `event`, for a slot followed one in-person visit at a time.
    /// Non-in-person visits have no event: they never move a slot.
    pub fn on(self, event: SlotEvent) -> Result<SlotState, TransitionRefused> {
        use SlotEvent as E;
        use SlotState as S;
        let refused = Err(TransitionRefused { from: self, event });
        match (self, event) {
            // A locked slot never changes; late visits are stored beside it.
            (S::Locked(outcome), _) => Ok(S::Locked(outcome)),
            (S::Due | S::Returned | S::Submitted, E::InPersonSubmitted) => Ok(S::Submitted),
            (S::Submitted, E::InPersonReturned) => Ok(S::Returned),
            (S::Submitted, E::InPersonApproved) => Ok(S::Approved),
            (S::Due | S::Submitted | S::Returned, E::MonthEnded) => Ok(S::Overdue),
            // An approval is final for the month: later visits or the month's end keep it.
            (S::Approved, E::InPersonSubmitted | E::MonthEnded) => Ok(S::Approved),
            // A visit of the month that arrives (or is decided) after the month ended but
            // before the close: only an approval lifts the slot out of overdue.
            (S::Overdue, E::InPersonSubmitted | E::InPersonReturned | E::MonthEnded) => {
                Ok(S::Overdue)
            }
            (S::Overdue, E::InPersonApproved) => Ok(S::Approved),
            (S::Approved, E::MonthClosed) => Ok(S::Locked(LockedOutcome::Approved)),
            (S::Overdue, E::MonthClosed) => Ok(S::Locked(LockedOutcome::Overdue)),
            // Closing needs the month to have ended; deciding needs a waiting visit.
            (S::Due | S::Submitted | S::Returned, E::MonthClosed)
            | (S::Due | S::Returned | S::Approved, E::InPersonReturned | E::InPersonApproved) => {
                refused
            }
        }
    }

    /// Stable lower-case name for URLs, storage and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Submitted => "submitted",
            Self::Returned => "returned",
            Self::Approved => "approved",
            Self::Overdue => "overdue",
            Self::Locked(LockedOutcome::Approved) => "locked_approved",
            Self::Locked(LockedOutcome::Overdue) => "locked_overdue",
        }
    }

    /// Parse the name written by [`SlotState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Due,
            Self::Submitted,
            Self::Returned,
            Self::Approved,
            Self::Overdue,
            Self::Locked(LockedOutcome::Approved),
            Self::Locked(LockedOutcome::Overdue),
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }

    /// Simplified Chinese label for the console.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Due => "待走访",
            Self::Submitted => "待审核",
            Self::Returned => "已退回",
            Self::Approved => "已通过",
            Self::Overdue => "逾期未走访",
            Self::Locked(LockedOutcome::Approved) => "已月结·已通过",
            Self::Locked(LockedOutcome::Overdue) => "已月结·逾期",
        }
    }
}

/// One visit of the slot's month, as its latest revision.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotVisit {
    pub visit_id: String,
    pub mode: VisitMode,
    /// Review state of the latest revision (never `Superseded`).
    pub review: ReviewState,
    pub checkin_at: OffsetDateTime,
    /// When the server received the latest revision.
    pub received_at: OffsetDateTime,
}

/// What month close froze for one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedSnapshot {
    pub outcome: LockedOutcome,
    /// An in-person visit was submitted or approved at close.
    pub visited_in_person: bool,
    /// An in-person visit was approved at close.
    pub approved_in_person: bool,
}

/// A slot as the ledger shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub state: SlotState,
    /// At least one in-person visit waits for review or was approved (a returned visit
    /// does not count: it was sent back as not good enough).
    pub visited_in_person: bool,
    /// At least one in-person visit was approved: what 入户率 counts.
    pub approved_in_person: bool,
}

impl Slot {
    /// True when the slot counts as overdue (live or frozen at close).
    pub fn is_overdue(&self) -> bool {
        matches!(
            self.state,
            SlotState::Overdue | SlotState::Locked(LockedOutcome::Overdue)
        )
    }

    /// The snapshot month close stores for this slot, or why the month cannot close yet.
    pub fn snapshot_for_close(&self, month: BusinessMonth) -> Result<LockedSnapshot, LedgerError> {
        let outcome = match self.state {
            SlotState::Approved | SlotState::Locked(LockedOutcome::Approved) => {
                LockedOutcome::Approved
            }
            SlotState::Overdue | SlotState::Locked(LockedOutcome::Overdue) => {
                LockedOutcome::Overdue
            }
            SlotState::Due | SlotState::Submitted | SlotState::Returned => {
                return Err(LedgerError::MonthNotEnded {
                    month: month.to_string(),
                });
            }
        };
        Ok(LockedSnapshot {
            outcome,
            visited_in_person: self.visited_in_person,
            approved_in_person: self.approved_in_person,
        })
    }
}

/// The slot of one household for `month` at `now`, from the month's visits (latest
/// revisions, any order, any mode) and the snapshot taken at close, if the month is closed.
pub fn derive_slot(
    month: BusinessMonth,
    visits: &[SlotVisit],
    lock: Option<&LockedSnapshot>,
    now: OffsetDateTime,
) -> Slot {
    if let Some(lock) = lock {
        return Slot {
            state: SlotState::Locked(lock.outcome),
            visited_in_person: lock.visited_in_person,
            approved_in_person: lock.approved_in_person,
        };
    }
    let in_person_with = |review: ReviewState| {
        visits
            .iter()
            .any(|visit| visit.mode == VisitMode::InPerson && visit.review == review)
    };
    let approved = in_person_with(ReviewState::Approved);
    let submitted = in_person_with(ReviewState::Submitted);
    let returned = in_person_with(ReviewState::Returned);
    let state = if approved {
        SlotState::Approved
    } else if month.has_ended(now) {
        SlotState::Overdue
    } else if submitted {
        SlotState::Submitted
    } else if returned {
        SlotState::Returned
    } else {
        SlotState::Due
    };
    Slot {
        state,
        visited_in_person: approved || submitted,
        approved_in_person: approved,
    }
}

/// 逾期补报: a visit of a closed month whose latest revision reached the server after the
/// close. It is stored and listed, and the locked snapshot stays as it was.
pub fn is_late_after_close(visit: &SlotVisit, closed_at: Option<OffsetDateTime>) -> bool {
    closed_at.is_some_and(|closed_at| visit.received_at > closed_at)
}

/// Whether `month` may be closed at `now`: only once it has ended (Beijing time).
pub fn check_close(month: BusinessMonth, now: OffsetDateTime) -> Result<(), LedgerError> {
    if month.has_ended(now) {
        Ok(())
    } else {
        Err(LedgerError::MonthNotEnded {
            month: month.to_string(),
        })
    }
}

/// The 入户率 counts of a group of slots (a village, a cadre, an area). Rates are left to
/// the caller, because an empty group has no rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageCounts {
    /// Households due a visit that month.
    pub due: u32,
    pub visited_in_person: u32,
    pub approved_in_person: u32,
    pub overdue: u32,
}

impl CoverageCounts {
    pub fn add(&mut self, slot: &Slot) {
        self.due += 1;
        self.visited_in_person += u32::from(slot.visited_in_person);
        self.approved_in_person += u32::from(slot.approved_in_person);
        self.overdue += u32::from(slot.is_overdue());
    }

    /// 入户率 as a percentage with one decimal, or `None` for an empty group.
    pub fn approved_rate_percent(&self) -> Option<f64> {
        (self.due > 0).then(|| {
            (f64::from(self.approved_in_person) * 1000.0 / f64::from(self.due)).round() / 10.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn march() -> BusinessMonth {
        BusinessMonth::parse("2026-03").expect("valid month")
    }

    fn visit(mode: VisitMode, review: ReviewState) -> SlotVisit {
        SlotVisit {
            visit_id: "v".into(),
            mode,
            review,
            checkin_at: datetime!(2026-03-10 02:00 UTC),
            received_at: datetime!(2026-03-10 05:00 UTC),
        }
    }

    const DURING: OffsetDateTime = datetime!(2026-03-20 02:00 UTC);
    const AFTER: OffsetDateTime = datetime!(2026-04-02 02:00 UTC);

    #[test]
    fn months_parse_strictly_and_print_back() {
        assert_eq!(march().to_string(), "2026-03");
        assert_eq!(march().label_zh(), "2026年3月");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-3",
            "26-03",
            "2026/03",
            "",
            "2026-03-01",
            "２０２６-03",
            "+026-03",
            "1999-12",
        ] {
            assert_eq!(
                BusinessMonth::parse(bad),
                Err(LedgerError::InvalidMonth(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn months_turn_over_at_beijing_midnight() {
        // 2026-03-31 23:30 Beijing is 15:30 UTC: still March.
        assert_eq!(
            BusinessMonth::of(datetime!(2026-03-31 15:30 UTC)),
            march(),
            "23:30 Beijing on the 31st"
        );
        // 2026-04-01 00:10 Beijing is 2026-03-31 16:10 UTC: April.
        assert_eq!(
            BusinessMonth::of(datetime!(2026-03-31 16:10 UTC)).to_string(),
            "2026-04"
        );
        assert_eq!(march().start(), datetime!(2026-02-28 16:00 UTC));
        assert_eq!(march().end(), datetime!(2026-03-31 16:00 UTC));
        assert!(!march().has_ended(datetime!(2026-03-31 15:59:59 UTC)));
        assert!(march().has_ended(datetime!(2026-03-31 16:00 UTC)));
        assert_eq!(
            BusinessMonth::parse("2026-01").expect("jan").previous(),
            BusinessMonth::parse("2025-12").expect("dec")
        );
        assert_eq!(
            BusinessMonth::parse("2025-12")
                .expect("dec")
                .next()
                .to_string(),
            "2026-01"
        );
        assert_eq!(
            BusinessMonth::of(datetime!(2026-03-31 15:30 UTC)).to_string(),
            crate::time_util::business_month(datetime!(2026-03-31 15:30 UTC)),
            "agrees with time_util"
        );
    }

    #[test]
    fn every_transition_of_the_machine() {
        use LockedOutcome as L;
        use SlotEvent as E;
        use SlotState as S;
        let allowed = [
            (S::Due, E::InPersonSubmitted, S::Submitted),
            (S::Due, E::MonthEnded, S::Overdue),
            (S::Submitted, E::InPersonSubmitted, S::Submitted),
            (S::Submitted, E::InPersonReturned, S::Returned),
            (S::Submitted, E::InPersonApproved, S::Approved),
            (S::Submitted, E::MonthEnded, S::Overdue),
            (S::Returned, E::InPersonSubmitted, S::Submitted),
            (S::Returned, E::MonthEnded, S::Overdue),
            (S::Approved, E::InPersonSubmitted, S::Approved),
            (S::Approved, E::MonthEnded, S::Approved),
            (S::Approved, E::MonthClosed, S::Locked(L::Approved)),
            (S::Overdue, E::InPersonSubmitted, S::Overdue),
            (S::Overdue, E::InPersonReturned, S::Overdue),
            (S::Overdue, E::InPersonApproved, S::Approved),
            (S::Overdue, E::MonthEnded, S::Overdue),
            (S::Overdue, E::MonthClosed, S::Locked(L::Overdue)),
        ];
        for (from, event, to) in allowed {
            assert_eq!(from.on(event), Ok(to), "{from:?} + {event:?}");
        }
        let refused = [
            (S::Due, E::InPersonReturned),
            (S::Due, E::InPersonApproved),
            (S::Due, E::MonthClosed),
            (S::Submitted, E::MonthClosed),
            (S::Returned, E::InPersonReturned),
            (S::Returned, E::InPersonApproved),
            (S::Returned, E::MonthClosed),
            (S::Approved, E::InPersonReturned),
            (S::Approved, E::InPersonApproved),
        ];
        for (from, event) in refused {
            assert_eq!(
                from.on(event),
                Err(TransitionRefused { from, event }),
                "{from:?} + {event:?}"
            );
        }
        let all_events = [
            E::InPersonSubmitted,
            E::InPersonReturned,
            E::InPersonApproved,
            E::MonthEnded,
            E::MonthClosed,
        ];
        for outcome in [L::Approved, L::Overdue] {
            for event in all_events {
                assert_eq!(
                    S::Locked(outcome).on(event),
                    Ok(S::Locked(outcome)),
                    "a locked slot never moves ({event:?})"
                );
            }
        }
        // Every (state, event) pair is covered by one of the lists above.
        assert_eq!(allowed.len() + refused.len() + 2 * all_events.len(), 7 * 5);
    }

    #[test]
    fn derive_follows_a_visit_through_submit_return_resubmit_approve() {
        let no_visits = derive_slot(march(), &[], None, DURING);
        assert_eq!(no_visits.state, SlotState::Due);
        let submitted = derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Submitted)],
            None,
            DURING,
        );
        assert_eq!(submitted.state, SlotState::Submitted);
        assert!(submitted.visited_in_person && !submitted.approved_in_person);
        let returned = derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Returned)],
            None,
            DURING,
        );
        assert_eq!(returned.state, SlotState::Returned);
        assert!(!returned.visited_in_person);
        let approved = derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Approved)],
            None,
            DURING,
        );
        assert_eq!(approved.state, SlotState::Approved);
        assert!(approved.visited_in_person && approved.approved_in_person);
        // The same path through the event machine ends in the same place.
        let folded = [
            SlotEvent::InPersonSubmitted,
            SlotEvent::InPersonReturned,
            SlotEvent::InPersonSubmitted,
            SlotEvent::InPersonApproved,
        ]
        .into_iter()
        .try_fold(SlotState::Due, SlotState::on);
        assert_eq!(folded, Ok(approved.state));
    }

    #[test]
    fn a_waiting_visit_beside_a_returned_one_keeps_the_slot_submitted() {
        let slot = derive_slot(
            march(),
            &[
                visit(VisitMode::InPerson, ReviewState::Returned),
                visit(VisitMode::InPerson, ReviewState::Submitted),
            ],
            None,
            DURING,
        );
        assert_eq!(slot.state, SlotState::Submitted);
    }

    #[test]
    fn phone_and_wechat_visits_never_count_even_when_approved() {
        for mode in [VisitMode::Phone, VisitMode::WechatVideo, VisitMode::Proxy] {
            let slot = derive_slot(march(), &[visit(mode, ReviewState::Approved)], None, DURING);
            assert_eq!(slot.state, SlotState::Due, "{mode:?}");
            assert!(!slot.visited_in_person && !slot.approved_in_person);
            let after = derive_slot(march(), &[visit(mode, ReviewState::Approved)], None, AFTER);
            assert_eq!(after.state, SlotState::Overdue, "{mode:?} after month end");
        }
    }

    #[test]
    fn the_month_end_makes_unapproved_slots_overdue_and_a_late_approval_lifts_them() {
        for review in [ReviewState::Submitted, ReviewState::Returned] {
            let slot = derive_slot(march(), &[visit(VisitMode::InPerson, review)], None, AFTER);
            assert_eq!(slot.state, SlotState::Overdue, "{review:?}");
            assert!(slot.is_overdue());
        }
        assert_eq!(
            derive_slot(march(), &[], None, AFTER).state,
            SlotState::Overdue
        );
        let approved_after = derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Approved)],
            None,
            AFTER,
        );
        assert_eq!(approved_after.state, SlotState::Approved);
        // One second before Beijing midnight the month is still running.
        assert_eq!(
            derive_slot(march(), &[], None, datetime!(2026-03-31 15:59:59 UTC)).state,
            SlotState::Due
        );
    }

    #[test]
    fn a_locked_slot_shows_its_snapshot_whatever_arrives_later() {
        let at_close = derive_slot(march(), &[], None, AFTER);
        let snapshot = at_close.snapshot_for_close(march()).expect("ended");
        assert_eq!(snapshot.outcome, LockedOutcome::Overdue);
        let late = SlotVisit {
            received_at: datetime!(2026-04-05 02:00 UTC),
            ..visit(VisitMode::InPerson, ReviewState::Approved)
        };
        let locked = derive_slot(march(), std::slice::from_ref(&late), Some(&snapshot), AFTER);
        assert_eq!(locked.state, SlotState::Locked(LockedOutcome::Overdue));
        assert!(
            !locked.approved_in_person,
            "the late approval is not counted"
        );
        assert!(is_late_after_close(
            &late,
            Some(datetime!(2026-04-03 02:00 UTC))
        ));
        assert!(!is_late_after_close(
            &late,
            Some(datetime!(2026-04-06 02:00 UTC))
        ));
        assert!(!is_late_after_close(&late, None));
    }

    #[test]
    fn closing_is_refused_until_the_month_has_ended() {
        assert_eq!(
            check_close(march(), DURING),
            Err(LedgerError::MonthNotEnded {
                month: "2026-03".into()
            })
        );
        assert_eq!(
            check_close(march().next(), AFTER),
            Err(LedgerError::MonthNotEnded {
                month: "2026-04".into()
            }),
            "the current month"
        );
        assert_eq!(check_close(march(), AFTER), Ok(()));
        let running = derive_slot(march(), &[], None, DURING);
        assert!(running.snapshot_for_close(march()).is_err());
    }

    #[test]
    fn coverage_counts_add_up_and_rates_round() {
        let mut counts = CoverageCounts::default();
        assert_eq!(counts.approved_rate_percent(), None);
        counts.add(&derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Approved)],
            None,
            AFTER,
        ));
        counts.add(&derive_slot(march(), &[], None, AFTER));
        counts.add(&derive_slot(
            march(),
            &[visit(VisitMode::InPerson, ReviewState::Submitted)],
            None,
            DURING,
        ));
        assert_eq!(
            counts,
            CoverageCounts {
                due: 3,
                visited_in_person: 2,
                approved_in_person: 1,
                overdue: 1
            }
        );
        assert_eq!(counts.approved_rate_percent(), Some(33.3));
    }

    #[test]
    fn state_names_round_trip() {
        for state in [
            SlotState::Due,
            SlotState::Submitted,
            SlotState::Returned,
            SlotState::Approved,
            SlotState::Overdue,
            SlotState::Locked(LockedOutcome::Approved),
            SlotState::Locked(LockedOutcome::Overdue),
        ] {
            assert_eq!(SlotState::parse(state.as_str()), Some(state));
        }
        assert_eq!(SlotState::parse("locked"), None);
    }
}
