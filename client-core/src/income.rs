//! 季登记 quarterly income on the phone: what the cadre registered on this device and its
//! fate ([`LocalIncome`]), and exact yuan ⇄ fen text for forms and the CLI (no floats: a
//! typed "3200.5" is 320050 fen, never 320049.99…).
//!
//! The formula and its rules live in `fieldsync_model::income`; [`crate::Client::register_income`]
//! applies them before anything is queued, so a registration the server would refuse as
//! malformed never reaches the outbox.

use fieldsync_model::income::IncomeRegistration;
use time::OffsetDateTime;

/// Where a registration made on this phone stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncomeState {
    /// Saved on the phone, in the outbox (待上传).
    Unsent,
    /// Accepted by the server (已上传).
    Sent,
    /// The server refused it permanently (被拒收), e.g. the household is no longer paired.
    Rejected,
}

impl IncomeState {
    pub const ALL: [Self; 3] = [Self::Unsent, Self::Sent, Self::Rejected];

    /// Stable lower-case name stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsent => "unsent",
            Self::Sent => "sent",
            Self::Rejected => "rejected",
        }
    }

    /// Parse the name written by [`IncomeState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The Chinese label the app shows.
    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Unsent => "待上传",
            Self::Sent => "已上传",
            Self::Rejected => "被拒收",
        }
    }
}

impl std::fmt::Display for IncomeState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.label_zh(), self.as_str())
    }
}

/// One quarterly registration made on this phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIncome {
    /// The registration as queued, with the net and per-capita net the formula derived.
    pub registration: IncomeRegistration,
    pub state: IncomeState,
    /// `(code, message)` when the server refused it.
    pub rejection: Option<(String, String)>,
    /// When it was saved on the phone.
    pub recorded_at: Option<OffsetDateTime>,
}

/// Why a yuan amount typed by the cadre cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YuanError {
    #[error("金额不能为空 (the amount is empty)")]
    Empty,
    #[error("金额不能为负数 (the amount must not be negative: {0:?})")]
    Negative(String),
    #[error("金额最多两位小数 (at most 2 decimals, i.e. to the fen: {0:?})")]
    TooManyDecimals(String),
    #[error("金额格式不对 (not an amount in yuan like 3200.50: {0:?})")]
    NotAnAmount(String),
    #[error("金额超出范围 (the amount is too large: {0:?})")]
    Overflow(String),
}

/// Read a non-negative amount in yuan with at most two decimals ("3200.5", "0.01", "1800")
/// as exact fen, from the decimal text itself. Surrounding blanks are ignored; signs,
/// exponents, thousands separators and a third decimal are refused.
pub fn parse_yuan(text: &str) -> Result<i64, YuanError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(YuanError::Empty);
    }
    if trimmed.starts_with('-') {
        return Err(YuanError::Negative(trimmed.to_owned()));
    }
    let not_an_amount = || YuanError::NotAnAmount(trimmed.to_owned());
    let (whole, fraction) = match trimmed.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (trimmed, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|fraction| !all_digits(fraction)) {
        return Err(not_an_amount());
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > 2 {
        return Err(YuanError::TooManyDecimals(trimmed.to_owned()));
    }
    let overflow = || YuanError::Overflow(trimmed.to_owned());
    let mut fen: i64 = 0;
    for digit in whole.bytes().chain(format!("{fraction:0<2}").bytes()) {
        fen = fen
            .checked_mul(10)
            .and_then(|fen| fen.checked_add(i64::from(digit - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(fen)
}

/// Fen as yuan with two decimals and thousands separators: 320050 → "3,200.50",
/// -1500 → "-15.00".
pub fn format_fen(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let magnitude = fen.unsigned_abs();
    let whole = (magnitude / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", magnitude % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_text_becomes_exact_fen() {
        assert_eq!(parse_yuan("3200.5"), Ok(320_050));
        assert_eq!(parse_yuan("3200.50"), Ok(320_050));
        assert_eq!(parse_yuan("0.01"), Ok(1));
        assert_eq!(parse_yuan("1800"), Ok(180_000));
        assert_eq!(parse_yuan(" 0 "), Ok(0));
        assert_eq!(parse_yuan("007.10"), Ok(710));
        // The classic float trap: 0.29 * 100 = 28.999999999999996.
        assert_eq!(parse_yuan("0.29"), Ok(29));
        assert_eq!(parse_yuan("92233720368547758.07"), Ok(i64::MAX));
    }

    #[test]
    fn bad_yuan_text_is_refused_with_the_reason() {
        assert_eq!(
            parse_yuan("1.234"),
            Err(YuanError::TooManyDecimals("1.234".into()))
        );
        assert_eq!(parse_yuan("-1"), Err(YuanError::Negative("-1".into())));
        assert_eq!(parse_yuan("-0.5"), Err(YuanError::Negative("-0.5".into())));
        assert_eq!(parse_yuan(""), Err(YuanError::Empty));
        assert_eq!(parse_yuan("   "), Err(YuanError::Empty));
        for text in [
            "1.", ".5", "+1", "1e3", "1,200", "12a", "1.2.3", "一百", "NaN", "1. 5", "１２",
        ] {
            assert_eq!(
                parse_yuan(text),
                Err(YuanError::NotAnAmount(text.trim().into())),
                "{text:?}"
            );
        }
        assert_eq!(
            parse_yuan("92233720368547758.08"),
            Err(YuanError::Overflow("92233720368547758.08".into()))
        );
        assert!(matches!(
            parse_yuan("99999999999999999999999"),
            Err(YuanError::Overflow(_))
        ));
    }

    #[test]
    fn fen_read_as_yuan_with_separators() {
        assert_eq!(format_fen(320_050), "3,200.50");
        assert_eq!(format_fen(1), "0.01");
        assert_eq!(format_fen(0), "0.00");
        assert_eq!(format_fen(-1_500), "-15.00");
        assert_eq!(format_fen(123_456_789), "1,234,567.89");
        assert_eq!(format_fen(i64::MIN), "-92,233,720,368,547,758.08");
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in IncomeState::ALL {
            assert_eq!(IncomeState::parse(state.as_str()), Some(state));
        }
        assert_eq!(IncomeState::parse("approved"), None);
    }
}
