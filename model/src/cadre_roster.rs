//! The cadre roster (帮扶干部花名册) as an import template, and the pure checks of its rows
//! (issue 12 §3). One row per cadre: 姓名, 手机号 (the login name), 身份证号 (GB 11643,
//! check digit verified), 帮扶单位, 职级 (the 8741 rank: 正县级/副县级/科级/一般干部, empty
//! for 乡镇驻村干部 without one), 乡镇 (name or 12-digit code of a township of the county),
//! 驻村工作队 (是/否), 开始日期, 结束日期.
//!
//! Validation is pure: the caller hands in the county's townships and the accounts that
//! already exist (by ID number and by login name), and gets back the rows to create, the
//! rows that are already accounts (a re-import skips them: idempotent), and one issue per
//! bad cell with its row number as Excel shows it.

use std::collections::{HashMap, HashSet};

use crate::codes::{CadreRank, CodeList};
use crate::id_number;
use crate::roster::{Cell, HeaderError, RowIssue, SheetRow, normalise_header, parse_date};
use serde::{Deserialize, Serialize};

/// Largest cadre roster accepted (a county has hundreds to a few thousand cadres; 志丹 has
/// 1,220 [S:L101]).
pub const MAX_CADRE_ROWS: usize = 10_000;

/// The template's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CadreColumn {
    Name,
    Mobile,
    IdNumber,
    Unit,
    Rank,
    Township,
    TeamMember,
    ActiveFrom,
    ActiveTo,
}

impl CadreColumn {
    pub const ALL: &'static [CadreColumn] = &[
        Self::Name,
        Self::Mobile,
        Self::IdNumber,
        Self::Unit,
        Self::Rank,
        Self::Township,
        Self::TeamMember,
        Self::ActiveFrom,
        Self::ActiveTo,
    ];

    /// The header as the template writes it.
    pub fn header_zh(self) -> &'static str {
        match self {
            Self::Name => "姓名",
            Self::Mobile => "手机号",
            Self::IdNumber => "身份证号",
            Self::Unit => "帮扶单位",
            Self::Rank => "职级",
            Self::Township => "乡镇",
            Self::TeamMember => "驻村工作队",
            Self::ActiveFrom => "开始日期",
            Self::ActiveTo => "结束日期",
        }
    }

    /// Other headers county sheets use for the same column.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Name => &["干部姓名", "帮扶干部"],
            Self::Mobile => &["手机", "联系电话", "电话"],
            Self::IdNumber => &["身份证号码", "公民身份号码"],
            Self::Unit => &["工作单位", "单位"],
            Self::Rank => &["干部职级"],
            Self::Township => &["所在乡镇", "帮扶乡镇"],
            Self::TeamMember => &["是否驻村工作队队员", "驻村工作队队员"],
            Self::ActiveFrom => &["帮扶开始日期"],
            Self::ActiveTo => &["帮扶结束日期"],
        }
    }

    pub fn required(self) -> bool {
        matches!(
            self,
            Self::Name | Self::Mobile | Self::IdNumber | Self::Township
        )
    }

    /// The note row of the template.
    pub fn note_zh(self) -> &'static str {
        match self {
            Self::Name => "必填",
            Self::Mobile => "必填：11位手机号，作为登录用户名",
            Self::IdNumber => "必填：18位身份证号",
            Self::Unit => "选填",
            Self::Rank => "选填：正县级/副县级/科级/一般干部，驻村干部无职级可留空",
            Self::Township => "必填：乡镇名称或12位区划代码",
            Self::TeamMember => "选填：是/否",
            Self::ActiveFrom | Self::ActiveTo => "选填：YYYY-MM-DD",
        }
    }
}

/// Where each template column is in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CadreColumnMap {
    positions: HashMap<CadreColumn, usize>,
}

impl CadreColumnMap {
    fn cell<'a>(&self, row: &'a SheetRow, column: CadreColumn) -> Option<&'a Cell> {
        self.positions
            .get(&column)
            .and_then(|position| row.cells.get(*position))
    }

    fn text(&self, row: &SheetRow, column: CadreColumn) -> String {
        self.cell(row, column).map(Cell::text).unwrap_or_default()
    }
}

/// Match a header row to the template; unknown headers are ignored.
pub fn map_cadre_headers(headers: &[String]) -> Result<CadreColumnMap, HeaderError> {
    let mut map = CadreColumnMap::default();
    for (position, header) in headers.iter().enumerate() {
        let header = normalise_header(header);
        if header.is_empty() {
            continue;
        }
        let column = CadreColumn::ALL.iter().copied().find(|column| {
            normalise_header(column.header_zh()) == header
                || column
                    .aliases()
                    .iter()
                    .any(|alias| normalise_header(alias) == header)
        });
        if let Some(column) = column
            && map.positions.insert(column, position).is_some()
        {
            return Err(HeaderError::DuplicateColumn(column.header_zh().to_owned()));
        }
    }
    let missing: Vec<String> = CadreColumn::ALL
        .iter()
        .filter(|column| column.required() && !map.positions.contains_key(column))
        .map(|column| column.header_zh().to_owned())
        .collect();
    if missing.is_empty() {
        Ok(map)
    } else {
        Err(HeaderError::MissingColumns(missing))
    }
}

/// A township of the importing county, by name and code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TownshipName {
    pub area_id: String,
    pub name: String,
}

/// One valid cadre row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CadreEntry {
    pub row_number: u32,
    pub name: String,
    /// 11-digit mobile number; also the login name.
    pub mobile: String,
    /// Upper-case 18-character ID number.
    pub id_number: String,
    pub unit: String,
    pub rank: Option<CadreRank>,
    pub township_id: String,
    pub team_member: bool,
    pub active_from: String,
    pub active_to: String,
}

/// Accounts that already exist, as the validation needs them.
#[derive(Debug, Clone, Default)]
pub struct ExistingAccounts {
    /// Upper-case ID numbers of existing accounts, with their login names.
    pub by_id_number: HashMap<String, String>,
    /// Login names in use.
    pub usernames: HashSet<String>,
}

/// The outcome of checking a whole roster. Serde: a checked roster is stored until it is
/// applied, so any server replica can show and apply it (issue 15 §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CadreRosterCheck {
    /// Rows that become new accounts.
    pub new_cadres: Vec<CadreEntry>,
    /// Rows whose ID number already has an account: (row number, name, existing username).
    pub existing: Vec<(u32, String, String)>,
    pub issues: Vec<RowIssue>,
    /// Data rows read (blank rows and the template's note row excluded).
    pub rows: usize,
}

impl CadreRosterCheck {
    /// Rows with at least one issue.
    pub fn bad_row_count(&self) -> usize {
        self.issues
            .iter()
            .map(|issue| issue.row_number)
            .collect::<HashSet<_>>()
            .len()
    }
}

fn is_mobile(text: &str) -> bool {
    text.len() == 11 && text.starts_with('1') && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn yes_no(text: &str) -> Option<bool> {
    match text.trim() {
        "" | "否" | "N" | "n" | "no" | "0" => Some(false),
        "是" | "Y" | "y" | "yes" | "1" => Some(true),
        _ => None,
    }
}

/// The template's note row (its first data row), skipped like a blank row.
fn is_note_row(row: &SheetRow, columns: &CadreColumnMap) -> bool {
    columns.text(row, CadreColumn::Mobile) == CadreColumn::Mobile.note_zh()
}

/// Check every row of a roster. A row with any issue is not imported; the others are.
pub fn check_cadre_rows(
    columns: &CadreColumnMap,
    rows: &[SheetRow],
    townships: &[TownshipName],
    existing: &ExistingAccounts,
) -> CadreRosterCheck {
    let mut check = CadreRosterCheck::default();
    let mut seen_id_numbers: HashMap<String, u32> = HashMap::new();
    let mut seen_mobiles: HashMap<String, u32> = HashMap::new();
    for row in rows {
        if row.is_blank() || is_note_row(row, columns) {
            continue;
        }
        check.rows += 1;
        let mut issues = Vec::new();
        let mut issue = |column: CadreColumn, reason: String| {
            issues.push(RowIssue {
                row_number: row.row_number,
                column: column.header_zh().to_owned(),
                reason,
            });
        };
        let name = columns.text(row, CadreColumn::Name);
        if name.is_empty() {
            issue(CadreColumn::Name, "姓名不能为空".into());
        }
        let mobile = columns
            .text(row, CadreColumn::Mobile)
            .replace([' ', '-'], "");
        if !is_mobile(&mobile) {
            issue(CadreColumn::Mobile, format!("“{mobile}”不是11位手机号"));
        } else if let Some(first) = seen_mobiles.insert(mobile.clone(), row.row_number) {
            issue(CadreColumn::Mobile, format!("手机号与第{first}行重复"));
        }
        let id_number = columns.text(row, CadreColumn::IdNumber).to_uppercase();
        match id_number::validate(&id_number) {
            Err(error) => issue(CadreColumn::IdNumber, error.to_string()),
            Ok(()) => {
                if let Some(first) = seen_id_numbers.insert(id_number.clone(), row.row_number) {
                    issue(CadreColumn::IdNumber, format!("身份证号与第{first}行重复"));
                }
            }
        }
        let rank_text = columns.text(row, CadreColumn::Rank);
        let rank = if rank_text.is_empty() || rank_text == "无" {
            None
        } else {
            let rank = CadreRank::from_label_zh(&rank_text);
            if rank.is_none() {
                issue(
                    CadreColumn::Rank,
                    format!("职级“{rank_text}”应为正县级、副县级、科级、一般干部或留空"),
                );
            }
            rank
        };
        let township_text = columns.text(row, CadreColumn::Township);
        let township = townships
            .iter()
            .find(|township| township.area_id == township_text || township.name == township_text);
        if township.is_none() {
            issue(
                CadreColumn::Township,
                format!("本县没有乡镇“{township_text}”"),
            );
        }
        let team_text = columns.text(row, CadreColumn::TeamMember);
        let team_member = yes_no(&team_text).unwrap_or_else(|| {
            issue(CadreColumn::TeamMember, format!("“{team_text}”应为是或否"));
            false
        });
        let mut date = |column: CadreColumn| {
            let text = columns.text(row, column);
            if text.is_empty() {
                return String::new();
            }
            parse_date(&text).unwrap_or_else(|| {
                issue(column, format!("“{text}”不是日期（YYYY-MM-DD）"));
                String::new()
            })
        };
        let active_from = date(CadreColumn::ActiveFrom);
        let active_to = date(CadreColumn::ActiveTo);
        if !active_from.is_empty() && !active_to.is_empty() && active_to < active_from {
            issue(CadreColumn::ActiveTo, "结束日期早于开始日期".into());
        }

        // Already an account (the same person): skipped, whatever else the row says, so a
        // re-import of the same file changes nothing.
        if issues.is_empty() {
            if let Some(username) = existing.by_id_number.get(&id_number) {
                check
                    .existing
                    .push((row.row_number, name.clone(), username.clone()));
                continue;
            }
            if existing.usernames.contains(&mobile) {
                issues.push(RowIssue {
                    row_number: row.row_number,
                    column: CadreColumn::Mobile.header_zh().to_owned(),
                    reason: format!("手机号{mobile}已是另一个账号的用户名"),
                });
            }
        }
        if !issues.is_empty() {
            check.issues.extend(issues);
            continue;
        }
        check.new_cadres.push(CadreEntry {
            row_number: row.row_number,
            name,
            mobile,
            id_number,
            unit: columns.text(row, CadreColumn::Unit),
            rank,
            township_id: township.map(|t| t.area_id.clone()).unwrap_or_default(),
            team_member,
            active_from,
            active_to,
        });
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<String> {
        CadreColumn::ALL
            .iter()
            .map(|column| column.header_zh().to_owned())
            .collect()
    }

    fn row(number: u32, cells: &[&str]) -> SheetRow {
        SheetRow {
            row_number: number,
            cells: cells
                .iter()
                .map(|text| Cell::Text((*text).into()))
                .collect(),
        }
    }

    fn townships() -> Vec<TownshipName> {
        vec![TownshipName {
            area_id: "610625101000".into(),
            name: "保安镇".into(),
        }]
    }

    const GOOD: &[&str] = &[
        "孙丽",
        "13912345678",
        "11010519491231002X",
        "县农业农村局",
        "科级",
        "保安镇",
        "是",
        "2026-03-01",
        "",
    ];

    #[test]
    fn headers_need_the_four_required_columns_and_accept_aliases() {
        assert!(map_cadre_headers(&headers()).is_ok());
        let aliased: Vec<String> = ["干部姓名", "联系电话", "公民身份号码", "所在乡镇"]
            .iter()
            .map(|text| (*text).to_owned())
            .collect();
        assert!(map_cadre_headers(&aliased).is_ok());
        assert_eq!(
            map_cadre_headers(&["姓名".to_owned(), "乡镇".to_owned()]),
            Err(HeaderError::MissingColumns(vec![
                "手机号".into(),
                "身份证号".into()
            ]))
        );
        let mut twice = headers();
        twice.push("手机".into());
        assert!(matches!(
            map_cadre_headers(&twice),
            Err(HeaderError::DuplicateColumn(_))
        ));
    }

    #[test]
    fn good_rows_become_cadres_and_existing_ones_are_skipped() {
        let columns = map_cadre_headers(&headers()).expect("headers");
        let mut second = GOOD.to_vec();
        second[0] = "李强";
        second[1] = "13800138000";
        second[2] = "110105198001011230";
        // Fix the check digit of the second ID number.
        let body = &second[2][..17];
        let check = id_number::check_character(body).expect("digits");
        let second_id = format!("{body}{check}");
        second[2] = &second_id;
        second[4] = "";
        second[6] = "否";
        let rows = vec![
            row(
                3,
                &CadreColumn::ALL
                    .iter()
                    .map(|c| c.note_zh())
                    .collect::<Vec<_>>(),
            ),
            row(4, GOOD),
            row(5, &second),
            row(6, &[""; 9]),
        ];
        let checked = check_cadre_rows(&columns, &rows, &townships(), &ExistingAccounts::default());
        assert_eq!(checked.issues, vec![]);
        assert_eq!(
            checked.rows, 2,
            "the note row and the blank row are skipped"
        );
        assert_eq!(checked.new_cadres.len(), 2);
        let sun = &checked.new_cadres[0];
        assert_eq!(
            (
                sun.mobile.as_str(),
                sun.rank,
                sun.township_id.as_str(),
                sun.team_member
            ),
            (
                "13912345678",
                Some(CadreRank::SectionLevel),
                "610625101000",
                true
            )
        );
        assert_eq!(checked.new_cadres[1].rank, None);

        let mut existing = ExistingAccounts::default();
        existing
            .by_id_number
            .insert("11010519491231002X".into(), "13912345678".into());
        existing.usernames.insert("13912345678".into());
        let again = check_cadre_rows(&columns, &rows, &townships(), &existing);
        assert_eq!(again.new_cadres.len(), 1);
        assert_eq!(
            again.existing,
            vec![(4, "孙丽".into(), "13912345678".into())]
        );
        assert_eq!(again.issues, vec![]);
    }

    /// One sabotaged cell per row, each reported against its column.
    #[test]
    fn every_bad_cell_is_reported_by_row_and_column() {
        let columns = map_cadre_headers(&headers()).expect("headers");
        let cases: &[(usize, &str, &str)] = &[
            (0, "", "姓名"),
            (1, "1391234567", "手机号"),
            (1, "23912345678", "手机号"),
            (2, "110105194912310021", "身份证号"),
            (2, "abc", "身份证号"),
            (4, "处级", "职级"),
            (5, "不存在镇", "乡镇"),
            (6, "可能", "驻村工作队"),
            (7, "2026-02-30", "开始日期"),
            (8, "2025-01-01", "结束日期"),
        ];
        for (index, value, column) in cases {
            let mut cells = GOOD.to_vec();
            cells[*index] = value;
            let checked = check_cadre_rows(
                &columns,
                &[row(7, &cells)],
                &townships(),
                &ExistingAccounts::default(),
            );
            assert!(checked.new_cadres.is_empty(), "{column} {value:?}");
            assert_eq!(
                checked.issues.len(),
                1,
                "{column} {value:?}: {:?}",
                checked.issues
            );
            assert_eq!(checked.issues[0].row_number, 7);
            assert_eq!(checked.issues[0].column, *column, "{value:?}");
        }
        // Duplicates within the file name the first row.
        let checked = check_cadre_rows(
            &columns,
            &[row(4, GOOD), row(9, GOOD)],
            &townships(),
            &ExistingAccounts::default(),
        );
        assert_eq!(checked.new_cadres.len(), 1);
        let reasons: Vec<&str> = checked.issues.iter().map(|i| i.reason.as_str()).collect();
        assert_eq!(reasons, vec!["手机号与第4行重复", "身份证号与第4行重复"]);
        assert_eq!(checked.bad_row_count(), 1);
        // A mobile number another person already logs in with.
        let mut existing = ExistingAccounts::default();
        existing.usernames.insert("13912345678".into());
        let checked = check_cadre_rows(&columns, &[row(4, GOOD)], &townships(), &existing);
        assert_eq!(checked.issues.len(), 1);
        assert!(checked.issues[0].reason.contains("已是另一个账号"));
    }
}
