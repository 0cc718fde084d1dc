//! Throttling of failed logins (登录失败限制) by username and by client address, with
//! exponential back-off. Pure bookkeeping: the caller passes "now" (from the server's
//! [`crate::clock::Clock`]), so tests move time instead of sleeping.
//!
//! Rule: after `failures_before_lock` failures of one key within the window, the key is
//! locked for `first_lock`; every further failure doubles the lock, up to `max_lock`.
//! Attempts during a lock are refused before any password is checked, so they neither cost
//! a hash nor count. A success clears the username's record (the cadre got it right);
//! it does not clear the address's, or one valid account would let an attacker reset the
//! address after every few guesses at other accounts. A key's failures are forgotten after
//! `window` of quiet following its last failure or lock.
//!
//! The state is in memory only (no migration): a restart forgets it, which at worst gives
//! an attacker one fresh round of attempts per restart. The table is capped at
//! `max_entries`; when full, expired records go first, then the least recently failed.

use std::collections::HashMap;
use std::net::IpAddr;

use time::{Duration, OffsetDateTime};

use crate::settings::LoginSettings;

/// Longest username kept as a throttle key; longer ones are cut, so a hostile name cannot
/// make one entry large.
const MAX_KEY_CHARS: usize = 64;

/// Longest window or lock honoured, whatever the settings say.
const YEAR_SECS: u64 = 365 * 24 * 60 * 60;

/// What a failure count is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// A username as typed (trimmed, lower case, cut to 64 characters), whether or not it
    /// exists: unknown names are throttled exactly like real ones.
    Username(String),
    /// The client's IP address (the TCP peer).
    Address(IpAddr),
}

impl ThrottleKey {
    pub fn username(username: &str) -> Self {
        Self::Username(
            username
                .trim()
                .chars()
                .take(MAX_KEY_CHARS)
                .flat_map(char::to_lowercase)
                .collect(),
        )
    }

    /// For the audit log: `username:cadre01` or `address:203.0.113.7`.
    pub fn describe(&self) -> String {
        match self {
            Self::Username(name) => format!("username:{name}"),
            Self::Address(address) => format!("address:{address}"),
        }
    }
}

/// The limits, in the throttle's own units (from [`LoginSettings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleRules {
    pub username_failures_before_lock: u32,
    pub address_failures_before_lock: u32,
    pub window: Duration,
    pub first_lock: Duration,
    pub max_lock: Duration,
    pub max_entries: usize,
}

impl From<&LoginSettings> for ThrottleRules {
    fn from(settings: &LoginSettings) -> Self {
        // Capped at a year, so no setting can overflow the arithmetic on instants.
        let seconds =
            |value: u64| Duration::seconds(i64::try_from(value.min(YEAR_SECS)).unwrap_or(0));
        Self {
            username_failures_before_lock: settings.username_failures_before_lock.max(1),
            address_failures_before_lock: settings.address_failures_before_lock.max(1),
            window: seconds(settings.failure_window_secs),
            first_lock: seconds(settings.first_lock_secs.max(1)),
            max_lock: seconds(settings.max_lock_secs.max(1)),
            max_entries: settings.throttle_max_entries.max(2),
        }
    }
}

/// A key that just got locked by a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub key: ThrottleKey,
    /// Failures counted so far (the threshold on the first lock).
    pub failures: u32,
    pub lock: Duration,
    /// True when this failure is the one that reached the threshold (audit it once, not
    /// every doubling).
    pub crossed_threshold: bool,
}

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    last_failure: OffsetDateTime,
    locked_until: Option<OffsetDateTime>,
}

impl Record {
    /// When this record's failures are forgotten.
    fn expires_at(&self, window: Duration) -> OffsetDateTime {
        self.locked_until
            .map_or(self.last_failure, |until| until.max(self.last_failure))
            + window
    }
}

/// Failure records of usernames and addresses.
#[derive(Debug)]
pub struct LoginThrottle {
    rules: ThrottleRules,
    records: HashMap<ThrottleKey, Record>,
}

impl LoginThrottle {
    pub fn new(rules: ThrottleRules) -> Self {
        Self {
            rules,
            records: HashMap::new(),
        }
    }

    /// How many usernames and addresses are remembered now.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// `Err(wait)` when any of `keys` is locked at `now`: the longest remaining lock,
    /// rounded up to whole seconds (at least 1), as `Retry-After` wants.
    pub fn check(&self, keys: &[ThrottleKey], now: OffsetDateTime) -> Result<(), u64> {
        let longest = keys
            .iter()
            .filter_map(|key| self.records.get(key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match longest {
            None => Ok(()),
            Some(wait) => {
                let millis = u64::try_from(wait.whole_milliseconds()).unwrap_or(u64::MAX);
                Err(millis.div_ceil(1000).max(1))
            }
        }
    }

    /// Count a failed login against `key`; returns the lock it caused, if any.
    pub fn record_failure(&mut self, key: ThrottleKey, now: OffsetDateTime) -> Option<Locked> {
        let threshold = match key {
            ThrottleKey::Username(_) => self.rules.username_failures_before_lock,
            ThrottleKey::Address(_) => self.rules.address_failures_before_lock,
        };
        if !self.records.contains_key(&key) {
            self.make_room(now);
        }
        let window = self.rules.window;
        let record = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if record.expires_at(window) < now {
            record.failures = 0;
            record.locked_until = None;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures < threshold {
            return None;
        }
        // 1 s, 2 s, 4 s, … for the threshold-th, next, … failure; the shift is capped so
        // it cannot overflow, and max_lock caps the result.
        let doublings = (record.failures - threshold).min(30);
        let lock = self
            .rules
            .first_lock
            .checked_mul(1_i32 << doublings)
            .unwrap_or(self.rules.max_lock)
            .min(self.rules.max_lock);
        record.locked_until = Some(now + lock);
        Some(Locked {
            key,
            failures: record.failures,
            lock,
            crossed_threshold: record.failures == threshold,
        })
    }

    /// A successful login: the username's record goes (the address's stays, see the
    /// module docs).
    pub fn record_success(&mut self, key: &ThrottleKey) {
        if matches!(key, ThrottleKey::Username(_)) {
            self.records.remove(key);
        }
    }

    /// Keep the table under `max_entries` before adding one: drop expired records, and if
    /// none expired, the one whose last failure is oldest.
    fn make_room(&mut self, now: OffsetDateTime) {
        if self.records.len() < self.rules.max_entries {
            return;
        }
        let window = self.rules.window;
        self.records
            .retain(|_, record| record.expires_at(window) >= now);
        if self.records.len() < self.rules.max_entries {
            return;
        }
        // Prefer forgetting a key that is not locked right now, so spraying made-up names
        // does not unlock the account under attack.
        let oldest = self
            .records
            .iter()
            .min_by_key(|(_, record)| {
                (
                    record.locked_until.is_some_and(|until| until > now),
                    record.last_failure,
                )
            })
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            self.records.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ThrottleRules {
        ThrottleRules::from(&LoginSettings::default())
    }

    fn start() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
    }

    fn cadre() -> ThrottleKey {
        ThrottleKey::username("cadre01")
    }

    #[test]
    fn five_failures_lock_for_one_second_then_each_failure_doubles_up_to_fifteen_minutes() {
        let mut throttle = LoginThrottle::new(rules());
        let mut now = start();
        for _ in 0..4 {
            assert_eq!(throttle.record_failure(cadre(), now), None);
            assert_eq!(throttle.check(&[cadre()], now), Ok(()));
        }
        let locked = throttle.record_failure(cadre(), now).unwrap();
        assert_eq!(locked.lock, Duration::seconds(1));
        assert!(locked.crossed_threshold);
        assert_eq!(throttle.check(&[cadre()], now), Err(1));
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for step in 1..=12 {
            now += throttle_wait(&throttle, now);
            assert_eq!(throttle.check(&[cadre()], now), Ok(()), "lock over");
            let locked = throttle.record_failure(cadre(), now).unwrap();
            assert!(!locked.crossed_threshold, "audited once, at the threshold");
            seen.push(locked.lock.whole_seconds());
            expected.push((1_i64 << step).min(900));
        }
        assert_eq!(seen, expected);
        assert_eq!(*seen.last().unwrap(), 900, "capped at 15 min");
    }

    fn throttle_wait(throttle: &LoginThrottle, now: OffsetDateTime) -> Duration {
        match throttle.check(&[cadre()], now) {
            Ok(()) => Duration::ZERO,
            Err(seconds) => Duration::seconds(i64::try_from(seconds).unwrap()),
        }
    }

    #[test]
    fn retry_after_rounds_up_and_names_the_longest_lock() {
        let mut throttle = LoginThrottle::new(rules());
        let now = start();
        for _ in 0..6 {
            throttle.record_failure(cadre(), now);
        }
        // Locked for 2 s; 0.5 s later 1.5 s remain, announced as 2.
        let later = now + Duration::milliseconds(500);
        assert_eq!(throttle.check(&[cadre()], later), Err(2));
        let address = ThrottleKey::Address("203.0.113.7".parse().unwrap());
        assert_eq!(
            throttle.check(&[address.clone(), cadre()], later),
            Err(2),
            "an unlocked address does not hide a locked username"
        );
        assert_eq!(throttle.check(&[address], later), Ok(()));
    }

    #[test]
    fn success_clears_the_username_but_not_the_address() {
        let mut throttle = LoginThrottle::new(rules());
        let now = start();
        let address = ThrottleKey::Address("198.51.100.1".parse().unwrap());
        for _ in 0..4 {
            throttle.record_failure(cadre(), now);
        }
        for _ in 0..19 {
            throttle.record_failure(address.clone(), now);
        }
        throttle.record_success(&cadre());
        throttle.record_success(&address);
        assert_eq!(
            throttle.record_failure(cadre(), now),
            None,
            "the username starts over after a success"
        );
        let locked = throttle.record_failure(address.clone(), now).unwrap();
        assert!(
            locked.crossed_threshold,
            "20th failure from one address locks"
        );
        assert_eq!(throttle.check(&[address], now), Err(1));
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_window() {
        let mut throttle = LoginThrottle::new(rules());
        let now = start();
        for _ in 0..4 {
            throttle.record_failure(cadre(), now);
        }
        let after_window = now + Duration::minutes(15) + Duration::seconds(1);
        assert_eq!(throttle.record_failure(cadre(), after_window), None);
        for _ in 0..3 {
            assert_eq!(throttle.record_failure(cadre(), after_window), None);
        }
        assert!(throttle.record_failure(cadre(), after_window).is_some());
    }

    #[test]
    fn usernames_are_keyed_case_and_space_insensitively_and_cut_short() {
        assert_eq!(ThrottleKey::username(" Cadre01 "), cadre());
        let ThrottleKey::Username(long) = ThrottleKey::username(&"名".repeat(10_000)) else {
            unreachable!()
        };
        assert_eq!(long.chars().count(), MAX_KEY_CHARS);
        assert_eq!(cadre().describe(), "username:cadre01");
    }

    #[test]
    fn the_table_is_capped_and_keeps_locked_keys_over_a_name_spray() {
        let mut throttle = LoginThrottle::new(ThrottleRules {
            max_entries: 100,
            ..rules()
        });
        let now = start();
        for _ in 0..5 {
            throttle.record_failure(cadre(), now);
        }
        // The whole spray lands while the account is locked (the injected clock stands).
        for index in 0..10_000 {
            throttle.record_failure(ThrottleKey::username(&format!("made-up-{index}")), now);
            assert!(throttle.len() <= 100);
        }
        assert_eq!(throttle.len(), 100);
        assert_eq!(
            throttle.check(&[cadre()], now + Duration::milliseconds(10)),
            Err(1),
            "the locked account was not evicted by the spray"
        );
    }
}
