//! Household search (农户检索) as its own store area: the console's one search box finds a
//! household by the name of its head or of a member (or their 拼音 initials), by its 户编号,
//! by the last digits of a member's ID number, or by a whole ID number. [`Store`](super::Store)
//! requires [`SearchStore`]; its conformance checks live in `conformance.rs`.
//!
//! This file holds the backend-neutral parts: what a query means ([`HouseholdQuery::parse`])
//! and what of a household is searchable ([`SearchDocument::of`]). The SQLite backend keeps
//! the documents in an FTS5 table (`sqlite.rs`, migration 0023), refreshed in
//! the same transaction as every card write.
//!
//! **Personal data.** ID numbers are sealed at rest (`sealed.rs`); the index never holds
//! one. It holds only the last four characters of each member's number, which the masked
//! form (`110105********1234`) shows to every role anyway. A whole ID number is looked up
//! through the keyed blind index (`member_id_index`); five or six trailing digits are
//! narrowed by the last four in the index and then compared against the opened card.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::household::{Household, Member};

use crate::store::{LedgerArea, StoreResult};

/// Longest query accepted, in characters: a whole ID number with room for spaces.
pub const MAX_QUERY_CHARS: usize = 40;
/// Fewest digits a number query needs: fewer match most households of a county.
pub const MIN_DIGITS: usize = 4;
/// Fewest letters an initials query needs ("wx" for 王小…).
pub const MIN_INITIALS: usize = 2;
/// Trailing ID-number characters a query may give without the whole number (the index holds
/// the last [`ID_TAIL_CHARS`]; one or two more are checked against the opened card).
pub const MAX_ID_TAIL_CHARS: usize = 6;
/// ID-number characters kept in the index: exactly what the masked form shows at the end.
pub const ID_TAIL_CHARS: usize = 4;
/// Characters of a whole 居民身份证号.
const ID_NUMBER_CHARS: usize = 18;

/// What a search box query asks for. Fields that are `None` are not searched; a household
/// matches when any searched field matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HouseholdQuery {
    /// Characters found anywhere in the name of the head or a current member (Chinese
    /// characters, as typed, spaces removed).
    pub name: Option<String>,
    /// 拼音 initials (lower-case ASCII) that start the initials of a name: `wxm` or `wx`
    /// finds 王小明.
    pub initials: Option<String>,
    /// Digits found anywhere in the household's 户编号.
    pub number: Option<String>,
    /// The last 4–6 characters of a current member's ID number (upper-case `X`).
    pub id_tail: Option<String>,
    /// A whole ID number of a current member (upper-case `X`), found through the blind index.
    pub id_number: Option<String>,
}

/// Why a query cannot be searched; the message is Chinese, for the search page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("请输入户主或家庭成员姓名、户编号或身份证号后几位")]
    Empty,
    #[error("查询内容过长（最多 {MAX_QUERY_CHARS} 个字符）")]
    TooLong,
    #[error("数字至少输入 {MIN_DIGITS} 位（户编号或身份证号后几位）")]
    TooFewDigits,
    #[error("拼音首字母至少输入 {MIN_INITIALS} 个")]
    TooFewInitials,
    #[error("无法识别的查询：请只输入姓名（汉字）、拼音首字母或数字")]
    Unrecognised,
}

impl HouseholdQuery {
    /// Read what was typed into the search box: digits (with a final `X` of an ID number)
    /// are a 户编号 or ID number, ASCII letters are 拼音 initials, anything else a name.
    /// Spaces anywhere are ignored (people type "王 小明" or "5227 3110").
    pub fn parse(input: &str) -> Result<Self, QueryError> {
        let text: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if text.is_empty() {
            return Err(QueryError::Empty);
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let all_digits = text.bytes().all(|byte| byte.is_ascii_digit());
        let id_like = text
            .strip_suffix(['x', 'X'])
            .is_some_and(|body| !body.is_empty() && body.bytes().all(|byte| byte.is_ascii_digit()));
        if all_digits || id_like {
            let upper = text.to_ascii_uppercase();
            let length = upper.len();
            if length < MIN_DIGITS {
                return Err(QueryError::TooFewDigits);
            }
            return Ok(Self {
                number: all_digits.then(|| upper.clone()),
                id_tail: (length <= MAX_ID_TAIL_CHARS).then(|| upper.clone()),
                id_number: (length == ID_NUMBER_CHARS).then_some(upper),
                ..Self::default()
            });
        }
        if text.bytes().all(|byte| byte.is_ascii_alphabetic()) {
            if text.len() < MIN_INITIALS {
                return Err(QueryError::TooFewInitials);
            }
            return Ok(Self {
                initials: Some(text.to_ascii_lowercase()),
                ..Self::default()
            });
        }
        if text.chars().all(is_name_char) {
            return Ok(Self {
                name: Some(text),
                ..Self::default()
            });
        }
        Err(QueryError::Unrecognised)
    }

    /// Whether `member` is one the query found (for showing why a household matched).
    pub fn matches_member(&self, member: &Member) -> bool {
        self.name
            .as_deref()
            .is_some_and(|name| strip_spaces(&member.name).contains(name))
            || self
                .initials
                .as_deref()
                .is_some_and(|initials| name_initials(&member.name).starts_with(initials))
            || self.id_tail.as_deref().is_some_and(|tail| {
                visible_tail(&member.id_number).is_some()
                    && member.id_number.to_ascii_uppercase().ends_with(tail)
            })
            || self
                .id_number
                .as_deref()
                .is_some_and(|whole| member.id_number.eq_ignore_ascii_case(whole))
    }

    /// Whether the query finds a head of household of this name (such households are
    /// listed first).
    pub fn matches_head_name(&self, head_name: &str) -> bool {
        self.name
            .as_deref()
            .is_some_and(|name| strip_spaces(head_name).contains(name))
            || self
                .initials
                .as_deref()
                .is_some_and(|initials| name_initials(head_name).starts_with(initials))
    }

    /// Whether the household matches the query; the store's last check, on the opened card,
    /// for the parts the index can only narrow down (five or six trailing ID characters).
    pub fn matches(&self, household: &Household) -> bool {
        self.matches_head_name(&household.head_name)
            || self
                .number
                .as_deref()
                .is_some_and(|number| household.national_household_number.contains(number))
            || household
                .current_members()
                .any(|member| self.matches_member(member))
    }
}

/// Characters a name query may hold: letters of any script (汉字 are letters) and the
/// middle dots of minority names (阿卜杜·热合曼).
fn is_name_char(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '·' | '•' | '.')
}

fn strip_spaces(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The last [`ID_TAIL_CHARS`] characters of an ID number, upper-cased, when its masked form
/// shows them (`id_number::mask` shows the last four of anything longer than ten).
pub fn visible_tail(id_number: &str) -> Option<String> {
    let chars: Vec<char> = id_number.trim().chars().collect();
    (chars.len() > 10).then(|| {
        chars[chars.len() - ID_TAIL_CHARS..]
            .iter()
            .collect::<String>()
            .to_ascii_uppercase()
    })
}

/// 拼音 initials of a name, lower-case: 王小明 → `wxm`. Characters without a reading
/// (letters, dots) are skipped; a character with several readings takes its most common one
/// (the `pinyin` crate's first), which is right for most surnames but not all (单 as a
/// surname reads shàn, the crate says dān).
pub fn name_initials(name: &str) -> String {
    use pinyin::ToPinyin;
    name.chars()
        .filter_map(|c| c.to_pinyin())
        .map(|reading| reading.first_letter())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Every suffix of `word` (王小明 → 王小明, 小明, 明): indexed as separate tokens, a prefix
/// query on them finds the word by any part of it.
fn suffixes(word: &str) -> Vec<String> {
    word.char_indices()
        .map(|(start, _)| word[start..].to_owned())
        .collect()
}

/// What of a household is searchable, as the index stores it: whitespace-separated tokens
/// per column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchDocument {
    /// Suffixes of the head's name.
    pub head: String,
    /// Suffixes of the other current members' names.
    pub members: String,
    /// Initials of the head's and current members' names.
    pub initials: String,
    /// Suffixes of the 户编号.
    pub number: String,
    /// The visible last four characters of each current member's ID number.
    pub id_tails: String,
}

impl SearchDocument {
    /// The searchable parts of a household (plain card, as the domain holds it).
    pub fn of(household: &Household) -> Self {
        let head_name = strip_spaces(&household.head_name);
        let mut members = Vec::new();
        let mut initials = vec![name_initials(&head_name)];
        let mut id_tails = Vec::new();
        for member in household.current_members() {
            let name = strip_spaces(&member.name);
            if name != head_name {
                members.extend(suffixes(&name));
                initials.push(name_initials(&name));
            }
            id_tails.extend(visible_tail(&member.id_number));
        }
        initials.retain(|initials| !initials.is_empty());
        initials.dedup();
        Self {
            head: suffixes(&head_name).join(" "),
            members: members.join(" "),
            initials: initials.join(" "),
            number: suffixes(household.national_household_number.trim()).join(" "),
            id_tails: id_tails.join(" "),
        }
    }
}

/// Most households one search returns; the page asks for a narrower query beyond it.
pub const SEARCH_LIMIT: u32 = 50;

/// The household search's storage.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Households of `area` that `query` finds, at most `limit`: households whose head's
    /// name matches first, then members' names, initials and numbers; ties by head's name
    /// and household id. Households outside the area are never returned (nor counted).
    /// Cards are returned plain (the caller masks ID numbers for display).
    async fn search_households(
        &self,
        area: &LedgerArea,
        query: &HouseholdQuery,
        limit: u32,
    ) -> StoreResult<Vec<Household>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_as_names_initials_numbers_or_id_numbers() {
        assert_eq!(
            HouseholdQuery::parse(" 王 小明 "),
            Ok(HouseholdQuery {
                name: Some("王小明".into()),
                ..HouseholdQuery::default()
            })
        );
        assert_eq!(
            HouseholdQuery::parse("WXM"),
            Ok(HouseholdQuery {
                initials: Some("wxm".into()),
                ..HouseholdQuery::default()
            })
        );
        // Four to six digits: a 户编号 fragment or the end of an ID number.
        assert_eq!(
            HouseholdQuery::parse("0012"),
            Ok(HouseholdQuery {
                number: Some("0012".into()),
                id_tail: Some("0012".into()),
                ..HouseholdQuery::default()
            })
        );
        assert_eq!(
            HouseholdQuery::parse("02x"),
            Err(QueryError::TooFewDigits),
            "three characters are too few"
        );
        assert_eq!(
            HouseholdQuery::parse("1002x"),
            Ok(HouseholdQuery {
                id_tail: Some("1002X".into()),
                ..HouseholdQuery::default()
            }),
            "a final X is an ID number's check character, never a 户编号"
        );
        assert_eq!(
            HouseholdQuery::parse("5227311012010012"),
            Ok(HouseholdQuery {
                number: Some("5227311012010012".into()),
                ..HouseholdQuery::default()
            })
        );
        assert_eq!(
            HouseholdQuery::parse("11010519491231002x"),
            Ok(HouseholdQuery {
                id_number: Some("11010519491231002X".into()),
                ..HouseholdQuery::default()
            })
        );
        assert_eq!(
            HouseholdQuery::parse("110105194912310021").map(|query| query.id_number),
            Ok(Some("110105194912310021".into()))
        );
        assert_eq!(HouseholdQuery::parse("   "), Err(QueryError::Empty));
        assert_eq!(HouseholdQuery::parse("w"), Err(QueryError::TooFewInitials));
        assert_eq!(HouseholdQuery::parse("123"), Err(QueryError::TooFewDigits));
        assert_eq!(
            HouseholdQuery::parse("王\"; DROP"),
            Err(QueryError::Unrecognised)
        );
        assert_eq!(
            HouseholdQuery::parse(&"王".repeat(41)),
            Err(QueryError::TooLong)
        );
    }

    #[test]
    fn initials_and_suffixes() {
        assert_eq!(name_initials("王小明"), "wxm");
        assert_eq!(name_initials("阿卜杜·热合曼"), "abdrhm");
        assert_eq!(suffixes("王小明"), ["王小明", "小明", "明"]);
    }

    #[test]
    fn only_the_visible_tail_of_an_id_number_is_indexed() {
        assert_eq!(visible_tail("11010519491231002x"), Some("002X".into()));
        assert_eq!(visible_tail("1234567890"), None, "masked entirely");
        assert_eq!(visible_tail(""), None);
    }
}
