//! 居民身份证号码 (GB 11643-1999) checks: 17 digits plus an ISO 7064 MOD 11-2 check character.

use thiserror::Error;

/// Why an ID number is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdNumberError {
    #[error("身份证号应为18位 (ID number must have 18 characters, got {0})")]
    WrongLength(usize),
    #[error("身份证号前17位必须是数字 (the first 17 characters must be digits)")]
    NotDigits,
    #[error("身份证号出生日期无效 (birth date {0} is not a real date)")]
    BadBirthDate(String),
    #[error("身份证号校验位错误 (check character should be {expected}, got {actual})")]
    BadCheckCharacter { expected: char, actual: char },
}

/// Weights of the 17 body digits, 2^(17-i) mod 11 as GB 11643 lists them.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each remainder 0..=10.
const CHECK_CHARACTERS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// The check character for the first 17 digits. Panics never: non-digits are the caller's
/// error and yield `None`.
pub fn check_character(first_17_digits: &str) -> Option<char> {
    if first_17_digits.len() != 17 || !first_17_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first_17_digits
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    Some(CHECK_CHARACTERS[(sum % 11) as usize])
}

/// Validate an 18-character ID number: digits, a real birth date and the check character.
pub fn validate(id_number: &str) -> Result<(), IdNumberError> {
    let chars: Vec<char> = id_number.chars().collect();
    if chars.len() != 18 {
        return Err(IdNumberError::WrongLength(chars.len()));
    }
    let body: String = chars[..17].iter().collect();
    let expected = check_character(&body).ok_or(IdNumberError::NotDigits)?;
    let birth = &body[6..14];
    let valid_date = (|| {
        let year: i32 = birth[0..4].parse().ok()?;
        let month: u8 = birth[4..6].parse().ok()?;
        let day: u8 = birth[6..8].parse().ok()?;
        let month = time::Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, month, day).ok()
    })();
    if valid_date.is_none() {
        return Err(IdNumberError::BadBirthDate(birth.to_owned()));
    }
    let actual = chars[17].to_ascii_uppercase();
    if actual != expected {
        return Err(IdNumberError::BadCheckCharacter { expected, actual });
    }
    Ok(())
}

/// Mask an ID number for lists and exports: keep the first 6 and last 4 characters
/// (`110105********1234`), as DESIGN §7 shows.
pub fn mask(id_number: &str) -> String {
    let chars: Vec<char> = id_number.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_example_number_is_valid() {
        // The worked example of GB 11643-1999's check character: 11010519491231002X.
        assert_eq!(check_character("11010519491231002"), Some('X'));
        assert_eq!(validate("11010519491231002X"), Ok(()));
        assert_eq!(validate("11010519491231002x"), Ok(()));
    }

    #[test]
    fn a_wrong_check_character_is_named() {
        assert_eq!(
            validate("110105194912310021"),
            Err(IdNumberError::BadCheckCharacter {
                expected: 'X',
                actual: '1'
            })
        );
    }

    #[test]
    fn wrong_length_letters_and_impossible_dates_are_rejected() {
        assert_eq!(
            validate("1101051949123100"),
            Err(IdNumberError::WrongLength(16))
        );
        assert_eq!(
            validate("11010519491231A02X"),
            Err(IdNumberError::NotDigits)
        );
        let body = "11010519490231002"; // 31 February
        let id = format!("{body}{}", check_character(body).unwrap_or('0'));
        assert_eq!(
            validate(&id),
            Err(IdNumberError::BadBirthDate("19490231".into()))
        );
    }

    #[test]
    fn masking_keeps_region_and_last_four() {
        assert_eq!(mask("11010519491231002X"), "110105********002X");
        assert_eq!(mask("12345"), "*****");
    }
}
