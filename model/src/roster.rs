//! Roster import (建档立卡花名册导入): the template's columns, pure validation of each sheet
//! row, and the diff of the file against the stored households.
//!
//! A 建档立卡 export has one row per member (家庭成员) with the household (户) columns
//! repeated on every row of the household; rows are grouped by 户编号 (the national household
//! number, the import's key). Members are matched within their household by 证件号码.
//!
//! Nothing here reads files or touches storage: the server turns XLSX/CSV into
//! [`SheetRow`]s, hands over the county's areas and households, and stores the
//! [`ImportPlan`] this module computes. Every bad cell becomes a [`RowIssue`] naming the row
//! as Excel shows it, the column header and a reason in Simplified Chinese.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::codes::{
    CodeList, Disability, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    PovertyCause, Relation, Schooling, Sex,
};
use crate::household::{Household, Member};
use crate::id_number::{self, IdNumberError};
use crate::register::FieldTarget;

/// Largest number of data rows one file may hold (a county's register is ~50,000 members).
pub const MAX_DATA_ROWS: usize = 200_000;

/// One column of the roster template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    HouseholdNumber,
    Township,
    Village,
    HeadName,
    Phone,
    Address,
    Attribute,
    MainCause,
    SecondaryCauses,
    HousingDangerLevel,
    Name,
    Relation,
    Sex,
    IdNumber,
    BirthDate,
    Health,
    LabourCapacity,
    Schooling,
    Disability,
    DisabilityGrade,
    MedicalInsurance,
    SeriousIllnessInsurance,
    PensionInsurance,
}

impl Column {
    /// Every column, in template order.
    pub const ALL: &'static [Column] = &[
        Column::HouseholdNumber,
        Column::Township,
        Column::Village,
        Column::HeadName,
        Column::Phone,
        Column::Address,
        Column::Attribute,
        Column::MainCause,
        Column::SecondaryCauses,
        Column::HousingDangerLevel,
        Column::Name,
        Column::Relation,
        Column::Sex,
        Column::IdNumber,
        Column::BirthDate,
        Column::Health,
        Column::LabourCapacity,
        Column::Schooling,
        Column::Disability,
        Column::DisabilityGrade,
        Column::MedicalInsurance,
        Column::SeriousIllnessInsurance,
        Column::PensionInsurance,
    ];

    /// The header the template writes.
    pub fn header_zh(self) -> &'static str {
        match self {
            Column::HouseholdNumber => "户编号",
            Column::Township => "乡镇",
            Column::Village => "行政村",
            Column::HeadName => "户主姓名",
            Column::Phone => "联系电话",
            Column::Address => "住址",
            Column::Attribute => "户属性",
            Column::MainCause => "主要致贫原因",
            Column::SecondaryCauses => "次要致贫原因",
            Column::HousingDangerLevel => "住房安全等级",
            Column::Name => "姓名",
            Column::Relation => "与户主关系",
            Column::Sex => "性别",
            Column::IdNumber => "证件号码",
            Column::BirthDate => "出生日期",
            Column::Health => "健康状况",
            Column::LabourCapacity => "劳动技能",
            Column::Schooling => "在校生情况",
            Column::Disability => "残疾类别",
            Column::DisabilityGrade => "残疾等级",
            Column::MedicalInsurance => "参加城乡居民医疗保险",
            Column::SeriousIllnessInsurance => "参加大病保险",
            Column::PensionInsurance => "参加城乡居民养老保险",
        }
    }

    /// Other headers that mean the same column in exports seen in the field.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::HouseholdNumber => &["户编码", "户号"],
            Column::Township => &["乡(镇)", "乡镇(街道)", "乡镇名称"],
            Column::Village => &["村", "行政村名称", "所属村"],
            Column::Attribute => &["贫困户属性"],
            Column::IdNumber => &["身份证号", "身份证号码", "证件号"],
            Column::Health => &["健康情况"],
            Column::LabourCapacity => &["劳动能力"],
            Column::Schooling => &["在校生状况"],
            Column::Phone => &["电话", "联系方式"],
            Column::Address => &["家庭住址"],
            Column::HousingDangerLevel => &["危房等级"],
            Column::MedicalInsurance => &["参加医保"],
            Column::PensionInsurance => &["参加养老保险"],
            _ => &[],
        }
    }

    /// Whether a file without this column is refused. Optional columns that are absent leave
    /// the stored field untouched (and take a default for new records).
    pub fn required(self) -> bool {
        !matches!(
            self,
            Column::Phone
                | Column::Address
                | Column::SecondaryCauses
                | Column::HousingDangerLevel
                | Column::Disability
                | Column::DisabilityGrade
                | Column::MedicalInsurance
                | Column::SeriousIllnessInsurance
                | Column::PensionInsurance
        )
    }

    /// A household column (repeated on every member row of the household).
    pub fn is_household_level(self) -> bool {
        matches!(
            self,
            Column::HouseholdNumber
                | Column::Township
                | Column::Village
                | Column::HeadName
                | Column::Phone
                | Column::Address
                | Column::Attribute
                | Column::MainCause
                | Column::SecondaryCauses
                | Column::HousingDangerLevel
        )
    }

    /// What the cell may hold, for the template's notes row and the documentation.
    pub fn note_zh(self) -> String {
        fn labels<T: CodeList>() -> String {
            T::ALL
                .iter()
                .map(|value| value.label_zh())
                .collect::<Vec<_>>()
                .join("/")
        }
        match self {
            Column::HouseholdNumber => "必填；同一户各成员行相同".into(),
            Column::Township => "必填；县内乡镇名称".into(),
            Column::Village => "必填；该乡镇下的行政村名称".into(),
            Column::HeadName => "必填；与户主本人的姓名一致".into(),
            Column::Phone => "选填；手机或固话".into(),
            Column::Address => "选填".into(),
            Column::Attribute => format!("必填：{}", labels::<HouseholdAttribute>()),
            Column::MainCause => format!("必填：{}", labels::<PovertyCause>()),
            Column::SecondaryCauses => "选填；多个用“、”分隔，取值同主要致贫原因".into(),
            Column::HousingDangerLevel => format!("选填：{}", labels::<HousingDangerLevel>()),
            Column::Name => "必填".into(),
            Column::Relation => format!("必填：{}；每户恰有一名户主", labels::<Relation>()),
            Column::Sex => "必填：男/女；须与证件号码一致".into(),
            Column::IdNumber => "必填；18位居民身份证号（文本格式）".into(),
            Column::BirthDate => "必填；YYYY-MM-DD，须与证件号码一致".into(),
            Column::Health => format!("必填：{}", labels::<Health>()),
            Column::LabourCapacity => format!("必填：{}", labels::<LabourCapacity>()),
            Column::Schooling => format!("必填：{}", labels::<Schooling>()),
            Column::Disability => format!("选填（默认无）：{}", labels::<Disability>()),
            Column::DisabilityGrade => "选填：一级/二级/三级/四级，或0-4".into(),
            Column::MedicalInsurance
            | Column::SeriousIllnessInsurance
            | Column::PensionInsurance => "选填：是/否".into(),
        }
    }
}

/// Normalise a header for matching: no spaces, no required-marker asterisks, ASCII parens.
/// (Also used by the other imports' header matching.)
pub fn normalise_header(header: &str) -> String {
    header
        .chars()
        .filter(|character| !character.is_whitespace() && *character != '*' && *character != '＊')
        .map(|character| match character {
            '（' => '(',
            '）' => ')',
            other => other,
        })
        .collect()
}

/// Where each template column sits in the file (headers are matched by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap {
    positions: BTreeMap<Column, usize>,
}

impl ColumnMap {
    /// The position of a column in the file, if the file has it.
    pub fn position(&self, column: Column) -> Option<usize> {
        self.positions.get(&column).copied()
    }

    pub fn has(&self, column: Column) -> bool {
        self.positions.contains_key(&column)
    }
}

/// Why a header row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("缺少必需的列：{}", .0.join("、"))]
    MissingColumns(Vec<String>),
    #[error("列“{0}”出现了两次")]
    DuplicateColumn(String),
}

/// Match the header row's cells to template columns by name. Unknown headers are ignored.
pub fn map_headers(headers: &[String]) -> Result<ColumnMap, HeaderError> {
    let mut map = ColumnMap::default();
    for (position, header) in headers.iter().enumerate() {
        let header = normalise_header(header);
        if header.is_empty() {
            continue;
        }
        let column = Column::ALL.iter().copied().find(|column| {
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
    let missing: Vec<String> = Column::ALL
        .iter()
        .filter(|column| column.required() && !map.has(**column))
        .map(|column| column.header_zh().to_owned())
        .collect();
    if missing.is_empty() {
        Ok(map)
    } else {
        Err(HeaderError::MissingColumns(missing))
    }
}

/// One cell as the file reader saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// A numeric cell (XLSX); CSV cells are always text.
    Number(f64),
    /// A date cell, already as YYYY-MM-DD.
    Date(String),
    Bool(bool),
    /// An Excel error value such as `#N/A`.
    Error(String),
}

impl Cell {
    /// The cell as trimmed text; integral numbers print without a fraction.
    pub fn text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(text) => text.trim().to_owned(),
            Cell::Number(number) => {
                if number.fract() == 0.0 && number.abs() < 1e15 {
                    format!("{}", *number as i64)
                } else {
                    number.to_string()
                }
            }
            Cell::Date(date) => date.clone(),
            Cell::Bool(true) => "是".into(),
            Cell::Bool(false) => "否".into(),
            Cell::Error(error) => error.clone(),
        }
    }

    fn is_blank(&self) -> bool {
        match self {
            Cell::Empty => true,
            Cell::Text(text) => text.trim().is_empty(),
            _ => false,
        }
    }
}

/// One data row of the sheet: its row number as Excel shows it (1-based, header included)
/// and its cells in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetRow {
    pub row_number: u32,
    pub cells: Vec<Cell>,
}

impl SheetRow {
    /// True when every cell is empty (such rows are skipped).
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_blank)
    }
}

/// One bad cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowIssue {
    /// Row number as Excel shows it.
    pub row_number: u32,
    /// The template header of the column.
    pub column: String,
    /// Why the cell is refused, in Simplified Chinese.
    pub reason: String,
}

/// An administrative area the file may name (township or village of the importing county).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaName {
    pub area_id: String,
    pub name: String,
    /// For a village: its township.
    pub parent_id: Option<String>,
}

/// What the import validates against: the county's townships and villages and its stored
/// households (cards with members).
#[derive(Debug, Clone, Default)]
pub struct CountyRoster {
    pub townships: Vec<AreaName>,
    pub villages: Vec<AreaName>,
    pub households: Vec<Household>,
}

/// Household values of a valid row. Optional columns absent from the file are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdValues {
    pub national_household_number: String,
    pub township_id: String,
    pub village_id: String,
    pub village_name: String,
    pub head_name: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub attribute: HouseholdAttribute,
    pub main_cause: PovertyCause,
    pub secondary_causes: Option<Vec<PovertyCause>>,
    pub housing_danger_level: Option<Option<HousingDangerLevel>>,
}

/// Member values of a valid row. Optional columns absent from the file are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberValues {
    pub name: String,
    pub relation: Relation,
    pub sex: Sex,
    pub birth_date: String,
    pub id_number: String,
    pub health: Health,
    pub labour_capacity: LabourCapacity,
    pub schooling: Schooling,
    pub disability: Option<Disability>,
    pub disability_grade: Option<u32>,
    pub has_medical_insurance: Option<bool>,
    pub has_serious_illness_insurance: Option<bool>,
    pub has_pension_insurance: Option<bool>,
}

/// One household of the file whose rows are all valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportHousehold {
    /// Row number of the household's first row (changes of household fields are shown
    /// against it).
    pub first_row: u32,
    pub values: HouseholdValues,
    /// Members with their row numbers, in file order.
    pub members: Vec<(u32, MemberValues)>,
}

/// Result of validating every row.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    pub data_rows: u64,
    /// Every bad cell, ordered by row and then template column.
    pub issues: Vec<RowIssue>,
    /// Households none of whose rows has an issue, in file order.
    pub households: Vec<ImportHousehold>,
}

impl Validated {
    /// How many distinct rows have at least one issue.
    pub fn bad_row_count(&self) -> usize {
        let mut rows: Vec<u32> = self.issues.iter().map(|issue| issue.row_number).collect();
        rows.dedup();
        rows.len()
    }
}

/// Parsed row: the values that parsed, plus the issues of the cells that did not.
struct ParsedRow {
    row_number: u32,
    household_number: String,
    household: Option<HouseholdValues>,
    member: Option<MemberValues>,
    issues: Vec<(Column, String)>,
}

/// Validate every data row against the template rules and the county. `on_progress` is
/// called with the number of rows validated so far (every 1,000 rows and at the end).
pub fn validate_rows(
    rows: &[SheetRow],
    columns: &ColumnMap,
    county: &CountyRoster,
    on_progress: &mut dyn FnMut(u64),
) -> Validated {
    let lookups = Lookups::new(county);
    let mut parsed: Vec<ParsedRow> = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if row.is_blank() {
            continue;
        }
        parsed.push(parse_row(row, columns, &lookups));
        if (index + 1) % 1_000 == 0 {
            on_progress((index + 1) as u64);
        }
    }
    cross_row_checks(&mut parsed, &lookups);
    on_progress(rows.len() as u64);

    let mut issues: Vec<RowIssue> = Vec::new();
    let mut bad_households: std::collections::HashSet<String> = Default::default();
    for row in &parsed {
        if !row.issues.is_empty() {
            bad_households.insert(row.household_number.clone());
        }
        let mut row_issues = row.issues.clone();
        row_issues.sort_by_key(|(column, _)| *column);
        row_issues.dedup();
        issues.extend(row_issues.into_iter().map(|(column, reason)| RowIssue {
            row_number: row.row_number,
            column: column.header_zh().to_owned(),
            reason,
        }));
    }
    issues.sort_by_key(|issue| issue.row_number);

    let mut households: Vec<ImportHousehold> = Vec::new();
    let mut household_index: HashMap<String, usize> = HashMap::new();
    for row in parsed {
        if bad_households.contains(&row.household_number) {
            continue;
        }
        let (Some(values), Some(member)) = (row.household, row.member) else {
            continue;
        };
        match household_index.get(&row.household_number) {
            Some(&index) => households[index].members.push((row.row_number, member)),
            None => {
                household_index.insert(row.household_number.clone(), households.len());
                households.push(ImportHousehold {
                    first_row: row.row_number,
                    values,
                    members: vec![(row.row_number, member)],
                });
            }
        }
    }
    Validated {
        data_rows: rows.iter().filter(|row| !row.is_blank()).count() as u64,
        issues,
        households,
    }
}

/// Indexes over the county built once per import.
struct Lookups<'a> {
    townships_by_name: HashMap<&'a str, &'a AreaName>,
    villages_by_township_and_name: HashMap<(&'a str, &'a str), &'a AreaName>,
    /// National household number → stored household.
    households_by_number: HashMap<&'a str, &'a Household>,
    /// ID number → national number of the stored household holding it (current members).
    id_owner: HashMap<String, &'a str>,
    township_names: HashMap<&'a str, &'a str>,
}

impl<'a> Lookups<'a> {
    fn new(county: &'a CountyRoster) -> Self {
        let mut id_owner = HashMap::new();
        for household in &county.households {
            for member in household.current_members() {
                if !member.id_number.is_empty() {
                    id_owner.insert(
                        member.id_number.to_ascii_uppercase(),
                        household.national_household_number.as_str(),
                    );
                }
            }
        }
        Lookups {
            townships_by_name: county
                .townships
                .iter()
                .map(|area| (area.name.as_str(), area))
                .collect(),
            villages_by_township_and_name: county
                .villages
                .iter()
                .filter_map(|area| {
                    area.parent_id
                        .as_deref()
                        .map(|parent| ((parent, area.name.as_str()), area))
                })
                .collect(),
            households_by_number: county
                .households
                .iter()
                .map(|household| (household.national_household_number.as_str(), household))
                .collect(),
            id_owner,
            township_names: county
                .townships
                .iter()
                .map(|area| (area.area_id.as_str(), area.name.as_str()))
                .collect(),
        }
    }
}

const REQUIRED_EMPTY: &str = "必填项为空";

/// The trimmed text of a column's cell; `None` when the file has no such column.
fn cell<'r>(row: &'r SheetRow, columns: &ColumnMap, column: Column) -> Option<&'r Cell> {
    columns
        .position(column)
        .map(|position| row.cells.get(position).unwrap_or(&Cell::Empty))
}

fn code_label<T: CodeList>(text: &str) -> Option<T> {
    let text = text.trim();
    T::from_label_zh(text).or_else(|| {
        text.parse::<i32>()
            .ok()
            .filter(|code| *code > 0)
            .and_then(T::from_code)
    })
}

fn unknown_label<T: CodeList>(text: &str, what: &str) -> String {
    let labels: Vec<&str> = T::ALL.iter().map(|value| value.label_zh()).collect();
    format!("“{text}”不是有效的{what}；可选：{}", labels.join("、"))
}

/// Parse a code-list cell that must be filled in.
fn required_code<T: CodeList>(
    row: &SheetRow,
    columns: &ColumnMap,
    column: Column,
    what: &str,
    issues: &mut Vec<(Column, String)>,
    alias: fn(&str) -> Option<T>,
) -> Option<T> {
    let text = cell(row, columns, column)
        .map(Cell::text)
        .unwrap_or_default();
    if text.is_empty() {
        issues.push((column, REQUIRED_EMPTY.into()));
        return None;
    }
    match code_label::<T>(&text).or_else(|| alias(&text)) {
        Some(value) => Some(value),
        None => {
            issues.push((column, unknown_label::<T>(&text, what)));
            None
        }
    }
}

fn no_alias<T>(_: &str) -> Option<T> {
    None
}

fn relation_alias(text: &str) -> Option<Relation> {
    matches!(text, "本人" | "户主本人").then_some(Relation::Head)
}

fn health_alias(text: &str) -> Option<Health> {
    (text == "大病").then_some(Health::SeriousIllness)
}

fn required_text(
    row: &SheetRow,
    columns: &ColumnMap,
    column: Column,
    max_chars: usize,
    issues: &mut Vec<(Column, String)>,
) -> Option<String> {
    let text = cell(row, columns, column)
        .map(Cell::text)
        .unwrap_or_default();
    if text.is_empty() {
        issues.push((column, REQUIRED_EMPTY.into()));
        return None;
    }
    if text.chars().count() > max_chars {
        issues.push((column, format!("不能超过{max_chars}个字")));
        return None;
    }
    Some(text)
}

/// An optional text column: `None` when absent from the file, `Some(None)` when invalid.
fn optional_text(
    row: &SheetRow,
    columns: &ColumnMap,
    column: Column,
    max_chars: usize,
    issues: &mut Vec<(Column, String)>,
) -> Option<Option<String>> {
    let text = cell(row, columns, column)?.text();
    if text.chars().count() > max_chars {
        issues.push((column, format!("不能超过{max_chars}个字")));
        return Some(None);
    }
    Some(Some(text))
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim() {
        "" | "否" | "N" | "n" | "no" | "No" | "false" | "FALSE" | "0" | "未参加" => Some(false),
        "是" | "Y" | "y" | "yes" | "Yes" | "true" | "TRUE" | "1" | "已参加" | "参加" => {
            Some(true)
        }
        _ => None,
    }
}

fn parse_grade(text: &str) -> Option<u32> {
    match text.trim() {
        "" | "无" | "0" => Some(0),
        "一级" | "1" | "1级" => Some(1),
        "二级" | "2" | "2级" => Some(2),
        "三级" | "3" | "3级" => Some(3),
        "四级" | "4" | "4级" => Some(4),
        _ => None,
    }
}

/// A date as YYYY-MM-DD from the forms officials type: 1980-01-02, 1980/1/2, 1980.1.2,
/// 19800102, 1980年1月2日; `None` when it is not a real date.
pub fn parse_date(text: &str) -> Option<String> {
    let text = text.trim();
    let (year, month, day): (i32, u8, u8) =
        if text.len() == 8 && text.bytes().all(|byte| byte.is_ascii_digit()) {
            (
                text[0..4].parse().ok()?,
                text[4..6].parse().ok()?,
                text[6..8].parse().ok()?,
            )
        } else {
            let parts: Vec<&str> = text
                .split(['-', '/', '.', '年', '月', '日'])
                .filter(|part| !part.is_empty())
                .collect();
            let [year, month, day] = parts.as_slice() else {
                return None;
            };
            if year.len() != 4 {
                return None;
            }
            (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
        };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

fn id_number_reason(error: &IdNumberError) -> String {
    match error {
        IdNumberError::WrongLength(length) => format!("证件号码应为18位（实为{length}位）"),
        IdNumberError::NotDigits => "证件号码前17位必须是数字".into(),
        IdNumberError::BadBirthDate(date) => format!("证件号码中的出生日期{date}不存在"),
        IdNumberError::BadCheckCharacter { expected, actual } => {
            format!("证件号码校验位错误（末位应为{expected}，实为{actual}）")
        }
    }
}

fn parse_row(row: &SheetRow, columns: &ColumnMap, lookups: &Lookups<'_>) -> ParsedRow {
    let mut issues: Vec<(Column, String)> = Vec::new();
    let household_number = required_text(row, columns, Column::HouseholdNumber, 40, &mut issues);
    let household = parse_household(
        row,
        columns,
        lookups,
        household_number.as_deref(),
        &mut issues,
    );
    let member = parse_member(row, columns, &mut issues);
    ParsedRow {
        row_number: row.row_number,
        household_number: household_number.unwrap_or_default(),
        household,
        member,
        issues,
    }
}

fn parse_household(
    row: &SheetRow,
    columns: &ColumnMap,
    lookups: &Lookups<'_>,
    household_number: Option<&str>,
    issues: &mut Vec<(Column, String)>,
) -> Option<HouseholdValues> {
    let issues_before = issues.len();
    let township_name = required_text(row, columns, Column::Township, 50, issues);
    let village_name = required_text(row, columns, Column::Village, 50, issues);
    let township = township_name.as_deref().and_then(|name| {
        let found = lookups.townships_by_name.get(name).copied();
        if found.is_none() {
            issues.push((Column::Township, format!("本县没有名为“{name}”的乡镇")));
        }
        found
    });
    let village = match (township, village_name.as_deref()) {
        (Some(township), Some(name)) => {
            let found = lookups
                .villages_by_township_and_name
                .get(&(township.area_id.as_str(), name))
                .copied();
            if found.is_none() {
                issues.push((
                    Column::Village,
                    format!("{}下没有名为“{name}”的行政村", township.name),
                ));
            }
            found
        }
        _ => None,
    };
    if let (Some(number), Some(village)) = (household_number, village)
        && let Some(stored) = lookups.households_by_number.get(number)
        && stored.village_id != village.area_id
    {
        let township_name = lookups
            .township_names
            .get(stored.township_id.as_str())
            .copied()
            .unwrap_or_default();
        issues.push((
            Column::Village,
            format!(
                "该户已登记在{township_name}{}，导入不能迁移户",
                stored.village_name
            ),
        ));
    }
    let head_name = required_text(row, columns, Column::HeadName, 50, issues);
    let phone = optional_text(row, columns, Column::Phone, 30, issues);
    if let Some(Some(phone)) = &phone
        && !phone.is_empty()
        && !phone
            .chars()
            .all(|character| character.is_ascii_digit() || "-+ ".contains(character))
    {
        issues.push((Column::Phone, format!("“{phone}”不是有效的电话号码")));
    }
    let address = optional_text(row, columns, Column::Address, 200, issues);
    let attribute = required_code::<HouseholdAttribute>(
        row,
        columns,
        Column::Attribute,
        "户属性",
        issues,
        no_alias,
    );
    let main_cause = required_code::<PovertyCause>(
        row,
        columns,
        Column::MainCause,
        "致贫原因",
        issues,
        no_alias,
    );
    let secondary_causes = cell(row, columns, Column::SecondaryCauses).map(|cell| {
        let text = cell.text();
        let mut causes = Vec::new();
        for part in text
            .split(['、', ',', '，', ';', '；', '/', ' '])
            .filter(|part| !part.trim().is_empty())
        {
            match code_label::<PovertyCause>(part) {
                Some(cause) if !causes.contains(&cause) => causes.push(cause),
                Some(_) => {}
                None => issues.push((
                    Column::SecondaryCauses,
                    unknown_label::<PovertyCause>(part, "致贫原因"),
                )),
            }
        }
        causes
    });
    let housing_danger_level = cell(row, columns, Column::HousingDangerLevel).map(|cell| {
        let text = cell.text();
        if text.is_empty() {
            return None;
        }
        let level = code_label::<HousingDangerLevel>(&text).or_else(|| {
            HousingDangerLevel::ALL
                .iter()
                .copied()
                .find(|level| level.label_zh().starts_with(text.trim_end_matches('级')))
        });
        if level.is_none() {
            issues.push((
                Column::HousingDangerLevel,
                unknown_label::<HousingDangerLevel>(&text, "住房安全等级"),
            ));
        }
        level
    });
    if issues.len() != issues_before {
        return None;
    }
    let village = village?;
    Some(HouseholdValues {
        national_household_number: household_number?.to_owned(),
        township_id: township?.area_id.clone(),
        village_id: village.area_id.clone(),
        village_name: village.name.clone(),
        head_name: head_name?,
        phone: phone.map(Option::unwrap_or_default),
        address: address.map(Option::unwrap_or_default),
        attribute: attribute?,
        main_cause: main_cause?,
        secondary_causes,
        housing_danger_level,
    })
}

fn parse_member(
    row: &SheetRow,
    columns: &ColumnMap,
    issues: &mut Vec<(Column, String)>,
) -> Option<MemberValues> {
    let issues_before = issues.len();
    let name = required_text(row, columns, Column::Name, 50, issues);
    let relation = required_code::<Relation>(
        row,
        columns,
        Column::Relation,
        "与户主关系",
        issues,
        relation_alias,
    );
    let sex = required_code::<Sex>(row, columns, Column::Sex, "性别", issues, no_alias);
    let id_number = match cell(row, columns, Column::IdNumber) {
        Some(Cell::Number(_)) => {
            issues.push((
                Column::IdNumber,
                "证件号码被存成了数字，末几位已丢失；请把该列设为文本后重新填写".into(),
            ));
            None
        }
        _ => required_text(row, columns, Column::IdNumber, 40, issues).and_then(|text| {
            let text = text
                .chars()
                .filter(|character| !character.is_whitespace())
                .collect::<String>()
                .to_ascii_uppercase();
            match id_number::validate(&text) {
                Ok(()) => Some(text),
                Err(error) => {
                    issues.push((Column::IdNumber, id_number_reason(&error)));
                    None
                }
            }
        }),
    };
    let birth_date = match cell(row, columns, Column::BirthDate) {
        Some(Cell::Number(number)) => {
            let date = parse_date(&Cell::Number(*number).text());
            if date.is_none() {
                issues.push((
                    Column::BirthDate,
                    format!(
                        "“{}”不是有效日期（应为YYYY-MM-DD）",
                        Cell::Number(*number).text()
                    ),
                ));
            }
            date
        }
        Some(other) => {
            let text = other.text();
            if text.is_empty() {
                issues.push((Column::BirthDate, REQUIRED_EMPTY.into()));
                None
            } else {
                let date = parse_date(&text);
                if date.is_none() {
                    issues.push((
                        Column::BirthDate,
                        format!("“{text}”不是有效日期（应为YYYY-MM-DD）"),
                    ));
                }
                date
            }
        }
        None => None,
    };
    if let (Some(id), Some(date)) = (&id_number, &birth_date) {
        let from_id = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
        if *date != from_id {
            issues.push((
                Column::BirthDate,
                format!("出生日期与证件号码不一致（证件号码中为{from_id}）"),
            ));
        }
    }
    if let (Some(id), Some(sex)) = (&id_number, sex) {
        let odd = id.as_bytes()[16].wrapping_sub(b'0') % 2 == 1;
        let from_id = if odd { Sex::Male } else { Sex::Female };
        if sex != from_id {
            issues.push((
                Column::Sex,
                format!("性别与证件号码不一致（证件号码为{}性）", from_id.label_zh()),
            ));
        }
    }
    let health = required_code::<Health>(
        row,
        columns,
        Column::Health,
        "健康状况",
        issues,
        health_alias,
    );
    let labour_capacity = required_code::<LabourCapacity>(
        row,
        columns,
        Column::LabourCapacity,
        "劳动技能",
        issues,
        no_alias,
    );
    let schooling = required_code::<Schooling>(
        row,
        columns,
        Column::Schooling,
        "在校生情况",
        issues,
        no_alias,
    );
    let disability = cell(row, columns, Column::Disability).map(|cell| {
        let text = cell.text();
        if text.is_empty() {
            return Disability::None;
        }
        code_label::<Disability>(&text).unwrap_or_else(|| {
            issues.push((
                Column::Disability,
                unknown_label::<Disability>(&text, "残疾类别"),
            ));
            Disability::None
        })
    });
    let disability_grade = cell(row, columns, Column::DisabilityGrade).map(|cell| {
        let text = cell.text();
        parse_grade(&text).unwrap_or_else(|| {
            issues.push((
                Column::DisabilityGrade,
                format!("“{text}”不是有效的残疾等级；可选：一级、二级、三级、四级"),
            ));
            0
        })
    });
    if disability == Some(Disability::None) && disability_grade.is_some_and(|grade| grade > 0) {
        issues.push((
            Column::DisabilityGrade,
            "残疾类别为“无”时不能填写残疾等级".into(),
        ));
    }
    let mut flag = |column: Column| {
        cell(row, columns, column).map(|cell| {
            let text = cell.text();
            parse_flag(&text).unwrap_or_else(|| {
                issues.push((column, format!("“{text}”应为“是”或“否”")));
                false
            })
        })
    };
    let has_medical_insurance = flag(Column::MedicalInsurance);
    let has_serious_illness_insurance = flag(Column::SeriousIllnessInsurance);
    let has_pension_insurance = flag(Column::PensionInsurance);
    if issues.len() != issues_before {
        return None;
    }
    Some(MemberValues {
        name: name?,
        relation: relation?,
        sex: sex?,
        birth_date: birth_date?,
        id_number: id_number?,
        health: health?,
        labour_capacity: labour_capacity?,
        schooling: schooling?,
        disability,
        disability_grade,
        has_medical_insurance,
        has_serious_illness_insurance,
        has_pension_insurance,
    })
}

/// Rules across rows: duplicate ID numbers (in the file and against other households of
/// the county), household columns that disagree within a household, exactly one 户主 per
/// household, and 户主姓名 equal to the head's own name.
fn cross_row_checks(parsed: &mut [ParsedRow], lookups: &Lookups<'_>) {
    let mut first_row_of_id: HashMap<String, u32> = HashMap::new();
    for row in parsed.iter_mut() {
        let Some(member) = &row.member else { continue };
        match first_row_of_id.get(&member.id_number) {
            Some(first) => row
                .issues
                .push((Column::IdNumber, format!("与第{first}行的证件号码重复"))),
            None => {
                first_row_of_id.insert(member.id_number.clone(), row.row_number);
            }
        }
        if let Some(owner) = lookups.id_owner.get(&member.id_number)
            && *owner != row.household_number
            && !row.household_number.is_empty()
        {
            row.issues.push((
                Column::IdNumber,
                format!("该证件号码已登记在户编号{owner}的家庭中"),
            ));
        }
    }

    // Group row indexes by household number, in file order.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for (index, row) in parsed.iter().enumerate() {
        if row.household_number.is_empty() {
            continue;
        }
        match group_of.get(&row.household_number) {
            Some(&group) => groups[group].1.push(index),
            None => {
                group_of.insert(row.household_number.clone(), groups.len());
                groups.push((row.household_number.clone(), vec![index]));
            }
        }
    }
    for (_, indexes) in groups {
        // Household columns: every valid row must agree with the first valid row.
        let reference = indexes
            .iter()
            .copied()
            .find(|&index| parsed[index].household.is_some());
        if let Some(reference) = reference {
            let reference_values = parsed[reference]
                .household
                .clone()
                .unwrap_or_else(|| unreachable!("found above"));
            let reference_row = parsed[reference].row_number;
            for &index in &indexes {
                let Some(values) = &parsed[index].household else {
                    continue;
                };
                let differing = differing_household_columns(&reference_values, values);
                for column in differing {
                    parsed[index].issues.push((
                        column,
                        format!("与本户第{reference_row}行的值不同（同一户编号的户信息须一致）"),
                    ));
                }
            }
        }
        // Exactly one head.
        let heads: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|&index| {
                parsed[index]
                    .member
                    .as_ref()
                    .is_some_and(|member| member.relation == Relation::Head)
            })
            .collect();
        let every_relation_known = indexes.iter().all(|&index| parsed[index].member.is_some());
        if heads.is_empty() && every_relation_known {
            let first = indexes[0];
            parsed[first].issues.push((
                Column::Relation,
                "该户没有与户主关系为“户主”的成员（每户须恰有一名户主）".into(),
            ));
        }
        if let Some((&first_head, others)) = heads.split_first() {
            let first_head_row = parsed[first_head].row_number;
            for &other in others {
                parsed[other].issues.push((
                    Column::Relation,
                    format!("同一户已有户主（第{first_head_row}行）；每户只能有一名户主"),
                ));
            }
            let head_name = parsed[first_head]
                .member
                .as_ref()
                .map(|member| member.name.clone())
                .unwrap_or_default();
            if let Some(values) = &parsed[first_head].household
                && values.head_name != head_name
            {
                let expected = values.head_name.clone();
                parsed[first_head].issues.push((
                    Column::HeadName,
                    format!("户主姓名“{expected}”与户主本人的姓名“{head_name}”不一致"),
                ));
            }
        }
    }
}

fn differing_household_columns(first: &HouseholdValues, other: &HouseholdValues) -> Vec<Column> {
    let mut columns = Vec::new();
    let checks: [(Column, bool); 9] = [
        (Column::Township, first.township_id != other.township_id),
        (Column::Village, first.village_id != other.village_id),
        (Column::HeadName, first.head_name != other.head_name),
        (Column::Phone, first.phone != other.phone),
        (Column::Address, first.address != other.address),
        (Column::Attribute, first.attribute != other.attribute),
        (Column::MainCause, first.main_cause != other.main_cause),
        (
            Column::SecondaryCauses,
            first.secondary_causes != other.secondary_causes,
        ),
        (
            Column::HousingDangerLevel,
            first.housing_danger_level != other.housing_danger_level,
        ),
    ];
    for (column, differs) in checks {
        if differs {
            columns.push(column);
        }
    }
    columns
}

// ---- diff against the store ----------------------------------------------------------------

/// A new member of a stored household.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMember {
    pub household_id: String,
    pub row_number: u32,
    pub member: Member,
}

/// One field of a stored household or member that the file changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub household_id: String,
    pub national_household_number: String,
    pub row_number: u32,
    pub target: FieldTarget,
    pub field: String,
    pub old_value: Value,
    pub new_value: Value,
    /// The register's sequence as the diff saw it: the write quotes it as its `base_seq`,
    /// so an edit from a phone after the dry run is a concurrent write (a conflict record),
    /// never a silent overwrite.
    pub base_seq: i64,
}

/// What applying the file would do. Serde: a dry run's plan is stored until it is applied,
/// so any server replica can apply it (issue 15 §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// Complete new cards (ids assigned), in file order.
    pub new_households: Vec<Household>,
    pub new_members: Vec<NewMember>,
    pub field_changes: Vec<FieldChange>,
    /// Valid rows that change nothing.
    pub unchanged_rows: u64,
}

impl ImportPlan {
    /// New members in new households plus members added to stored households.
    pub fn new_member_count(&self) -> usize {
        self.new_households
            .iter()
            .map(|household| household.members.len())
            .sum::<usize>()
            + self.new_members.len()
    }

    /// True when applying would change nothing (无变化).
    pub fn is_empty(&self) -> bool {
        self.new_households.is_empty()
            && self.new_members.is_empty()
            && self.field_changes.is_empty()
    }
}

/// The register value of a household field, in the JSON form field edits carry.
pub fn household_field_value(card: &Household, field: &str) -> Value {
    match field {
        "head_name" => json!(card.head_name),
        "phone" => json!(card.phone),
        "address" => json!(card.address),
        "attribute" => json!(card.attribute.code()),
        "main_cause" => json!(card.main_cause.code()),
        "secondary_causes" => json!(
            card.secondary_causes
                .iter()
                .map(|cause| cause.code())
                .collect::<Vec<_>>()
        ),
        "housing_danger_level" => card
            .housing_danger_level
            .map_or(Value::Null, |level| json!(level.code())),
        _ => Value::Null,
    }
}

/// The register value of a member field, in the JSON form field edits carry.
pub fn member_field_value(member: &Member, field: &str) -> Value {
    match field {
        "name" => json!(member.name),
        "relation" => json!(member.relation.code()),
        "sex" => json!(member.sex.code()),
        "birth_date" => json!(member.birth_date),
        "id_number" => json!(member.id_number),
        "health" => json!(member.health.code()),
        "labour_capacity" => json!(member.labour_capacity.code()),
        "schooling" => json!(member.schooling.code()),
        "disability" => json!(member.disability.code()),
        "disability_grade" => json!(member.disability_grade),
        "has_medical_insurance" => json!(member.has_medical_insurance),
        "has_serious_illness_insurance" => json!(member.has_serious_illness_insurance),
        "has_pension_insurance" => json!(member.has_pension_insurance),
        "removed" => json!(member.removed),
        _ => Value::Null,
    }
}

/// The household fields the file sets, as register values (absent optional columns are
/// left out, so they never change).
fn household_field_values(values: &HouseholdValues) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        ("head_name", json!(values.head_name)),
        ("attribute", json!(values.attribute.code())),
        ("main_cause", json!(values.main_cause.code())),
    ];
    if let Some(phone) = &values.phone {
        fields.push(("phone", json!(phone)));
    }
    if let Some(address) = &values.address {
        fields.push(("address", json!(address)));
    }
    if let Some(causes) = &values.secondary_causes {
        fields.push((
            "secondary_causes",
            json!(causes.iter().map(|cause| cause.code()).collect::<Vec<_>>()),
        ));
    }
    if let Some(level) = values.housing_danger_level {
        fields.push((
            "housing_danger_level",
            level.map_or(Value::Null, |level| json!(level.code())),
        ));
    }
    fields
}

fn member_field_values(values: &MemberValues) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        ("name", json!(values.name)),
        ("relation", json!(values.relation.code())),
        ("sex", json!(values.sex.code())),
        ("birth_date", json!(values.birth_date)),
        ("health", json!(values.health.code())),
        ("labour_capacity", json!(values.labour_capacity.code())),
        ("schooling", json!(values.schooling.code())),
    ];
    if let Some(disability) = values.disability {
        fields.push(("disability", json!(disability.code())));
    }
    if let Some(grade) = values.disability_grade {
        fields.push(("disability_grade", json!(grade)));
    }
    if let Some(flag) = values.has_medical_insurance {
        fields.push(("has_medical_insurance", json!(flag)));
    }
    if let Some(flag) = values.has_serious_illness_insurance {
        fields.push(("has_serious_illness_insurance", json!(flag)));
    }
    if let Some(flag) = values.has_pension_insurance {
        fields.push(("has_pension_insurance", json!(flag)));
    }
    fields
}

fn new_member(member_id: String, values: &MemberValues) -> Member {
    Member {
        member_id,
        name: values.name.clone(),
        relation: values.relation,
        sex: values.sex,
        birth_date: values.birth_date.clone(),
        id_number: values.id_number.clone(),
        health: values.health,
        labour_capacity: values.labour_capacity,
        schooling: values.schooling,
        disability: values.disability.unwrap_or(Disability::None),
        disability_grade: values.disability_grade.unwrap_or(0),
        has_medical_insurance: values.has_medical_insurance.unwrap_or(false),
        has_serious_illness_insurance: values.has_serious_illness_insurance.unwrap_or(false),
        has_pension_insurance: values.has_pension_insurance.unwrap_or(false),
        removed: false,
    }
}

/// Compare the valid households of the file with the stored ones. `new_id` makes ids for
/// new households and members. Members stored but missing from the file are left alone:
/// removing a person is a field decision (`removed`) made on the card, not by omission.
pub fn diff(
    households: &[ImportHousehold],
    stored: &[Household],
    new_id: &mut dyn FnMut() -> String,
) -> ImportPlan {
    let stored_by_number: HashMap<&str, &Household> = stored
        .iter()
        .map(|household| (household.national_household_number.as_str(), household))
        .collect();
    let mut plan = ImportPlan::default();
    for household in households {
        let values = &household.values;
        let Some(card) = stored_by_number
            .get(values.national_household_number.as_str())
            .copied()
        else {
            plan.new_households.push(Household {
                household_id: new_id(),
                national_household_number: values.national_household_number.clone(),
                head_name: values.head_name.clone(),
                township_id: values.township_id.clone(),
                village_id: values.village_id.clone(),
                village_name: values.village_name.clone(),
                address: values.address.clone().unwrap_or_default(),
                phone: values.phone.clone().unwrap_or_default(),
                attribute: values.attribute,
                main_cause: values.main_cause,
                secondary_causes: values.secondary_causes.clone().unwrap_or_default(),
                housing_danger_level: values.housing_danger_level.flatten(),
                location: None,
                members: household
                    .members
                    .iter()
                    .map(|(_, member)| new_member(new_id(), member))
                    .collect(),
                measures: Vec::new(),
                server_seq: 0,
                field_seqs: Default::default(),
            });
            continue;
        };
        let mut changed_rows: std::collections::HashSet<u32> = Default::default();
        for (field, new_value) in household_field_values(values) {
            let old_value = household_field_value(card, field);
            if old_value != new_value {
                changed_rows.insert(household.first_row);
                plan.field_changes.push(FieldChange {
                    household_id: card.household_id.clone(),
                    national_household_number: values.national_household_number.clone(),
                    row_number: household.first_row,
                    target: FieldTarget::Household,
                    field: field.to_owned(),
                    old_value,
                    base_seq: card.field_seq(&FieldTarget::Household, field),
                    new_value,
                });
            }
        }
        for (row_number, member_values) in &household.members {
            let existing = card.members.iter().find(|member| {
                member
                    .id_number
                    .eq_ignore_ascii_case(&member_values.id_number)
            });
            let Some(existing) = existing else {
                changed_rows.insert(*row_number);
                plan.new_members.push(NewMember {
                    household_id: card.household_id.clone(),
                    row_number: *row_number,
                    member: new_member(new_id(), member_values),
                });
                continue;
            };
            let target = FieldTarget::Member(existing.member_id.clone());
            let mut fields = member_field_values(member_values);
            if existing.removed {
                // Listed again in the register: the person is back in the household.
                fields.push(("removed", json!(false)));
            }
            for (field, new_value) in fields {
                let old_value = member_field_value(existing, field);
                if old_value != new_value {
                    changed_rows.insert(*row_number);
                    plan.field_changes.push(FieldChange {
                        household_id: card.household_id.clone(),
                        national_household_number: values.national_household_number.clone(),
                        row_number: *row_number,
                        base_seq: card.field_seq(&target, field),
                        target: target.clone(),
                        field: field.to_owned(),
                        old_value,
                        new_value,
                    });
                }
            }
        }
        plan.unchanged_rows += household
            .members
            .iter()
            .filter(|(row_number, _)| !changed_rows.contains(row_number))
            .count() as u64;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id_number::check_character;

    fn id(body: &str) -> String {
        format!("{body}{}", check_character(body).expect("17 digits"))
    }

    fn county() -> CountyRoster {
        CountyRoster {
            townships: vec![AreaName {
                area_id: "t1".into(),
                name: "城关镇".into(),
                parent_id: Some("c".into()),
            }],
            villages: vec![
                AreaName {
                    area_id: "v1".into(),
                    name: "东村".into(),
                    parent_id: Some("t1".into()),
                },
                AreaName {
                    area_id: "v2".into(),
                    name: "西村".into(),
                    parent_id: Some("t1".into()),
                },
            ],
            households: Vec::new(),
        }
    }

    const HEADERS: &[&str] = &[
        "户编号",
        "乡镇",
        "行政村",
        "户主姓名",
        "联系电话",
        "户属性",
        "主要致贫原因",
        "姓名",
        "与户主关系",
        "性别",
        "证件号码",
        "出生日期",
        "健康状况",
        "劳动技能",
        "在校生情况",
    ];

    fn columns() -> ColumnMap {
        map_headers(
            &HEADERS
                .iter()
                .map(|header| header.to_string())
                .collect::<Vec<_>>(),
        )
        .expect("headers")
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        row_number: u32,
        number: &str,
        village: &str,
        head: &str,
        name: &str,
        relation: &str,
        sex: &str,
        id_number: &str,
        birth: &str,
        health: &str,
    ) -> SheetRow {
        let cells = [
            number,
            "城关镇",
            village,
            head,
            "13800001111",
            "一般贫困户",
            "因病",
            name,
            relation,
            sex,
            id_number,
            birth,
            health,
            "普通劳动力",
            "非在校生",
        ];
        SheetRow {
            row_number,
            cells: cells
                .iter()
                .map(|text| Cell::Text(text.to_string()))
                .collect(),
        }
    }

    fn wang_rows() -> Vec<SheetRow> {
        vec![
            row(
                2,
                "H1",
                "东村",
                "王大山",
                "王大山",
                "户主",
                "男",
                &id("11010519600101001"),
                "1960-01-01",
                "健康",
            ),
            row(
                3,
                "H1",
                "东村",
                "王大山",
                "李秀英",
                "配偶",
                "女",
                &id("11010519620202002"),
                "1962/2/2",
                "长期慢性病",
            ),
        ]
    }

    #[test]
    fn headers_are_matched_by_name_in_any_order_and_missing_ones_are_named() {
        let mut reversed: Vec<String> = HEADERS.iter().rev().map(|h| format!(" {h}* ")).collect();
        reversed.push("备注".into());
        let map = map_headers(&reversed).expect("any order, markers and extra columns");
        assert_eq!(
            map.position(Column::HouseholdNumber),
            Some(HEADERS.len() - 1)
        );
        assert!(!map.has(Column::Address));

        let without: Vec<String> = HEADERS
            .iter()
            .filter(|header| **header != "证件号码" && **header != "姓名")
            .map(|header| header.to_string())
            .collect();
        assert_eq!(
            map_headers(&without),
            Err(HeaderError::MissingColumns(vec![
                "姓名".into(),
                "证件号码".into()
            ]))
        );
        let doubled: Vec<String> = ["户编号", "户号"].iter().map(|h| h.to_string()).collect();
        assert_eq!(
            map_headers(&doubled),
            Err(HeaderError::DuplicateColumn("户编号".into()))
        );
    }

    #[test]
    fn a_valid_household_passes_and_becomes_a_new_card() {
        let validated = validate_rows(&wang_rows(), &columns(), &county(), &mut |_| {});
        assert_eq!(validated.issues, Vec::<RowIssue>::new());
        assert_eq!(validated.households.len(), 1);
        let mut counter = 0;
        let plan = diff(&validated.households, &[], &mut || {
            counter += 1;
            format!("id-{counter}")
        });
        assert_eq!(plan.new_households.len(), 1);
        assert_eq!(plan.new_member_count(), 2);
        let card = &plan.new_households[0];
        assert_eq!(card.village_id, "v1");
        assert_eq!(card.members[1].birth_date, "1962-02-02");
        assert_eq!(card.members[1].health, Health::ChronicIllness);
    }

    fn issues_of(rows: &[SheetRow]) -> Vec<(u32, String, String)> {
        validate_rows(rows, &columns(), &county(), &mut |_| {})
            .issues
            .into_iter()
            .map(|issue| (issue.row_number, issue.column, issue.reason))
            .collect()
    }

    #[test]
    fn each_bad_cell_is_reported_with_row_column_and_a_chinese_reason() {
        let mut rows = wang_rows();
        // Bad check character.
        let mut bad_id = id("11010519620202002");
        bad_id.replace_range(17.., if bad_id.ends_with('1') { "2" } else { "1" });
        rows[1].cells[10] = Cell::Text(bad_id);
        let issues = issues_of(&rows);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].0, 3);
        assert_eq!(issues[0].1, "证件号码");
        assert!(issues[0].2.contains("校验位"), "{issues:?}");

        let mut rows = wang_rows();
        rows[1].cells[12] = Cell::Text("很好".into());
        rows[1].cells[7] = Cell::Empty;
        let issues = issues_of(&rows);
        assert_eq!(
            issues
                .iter()
                .map(|(row, column, _)| (*row, column.as_str()))
                .collect::<Vec<_>>(),
            vec![(3, "姓名"), (3, "健康状况")]
        );
        assert!(issues[1].2.contains("长期慢性病"), "lists the labels");
    }

    #[test]
    fn dates_must_be_real_and_agree_with_the_id_number_and_sex_too() {
        let mut rows = wang_rows();
        rows[1].cells[11] = Cell::Text("1962-02-30".into());
        assert_eq!(issues_of(&rows)[0].1, "出生日期");
        let mut rows = wang_rows();
        rows[1].cells[11] = Cell::Date("1962-02-03".into());
        let issues = issues_of(&rows);
        assert!(issues[0].2.contains("1962-02-02"), "{issues:?}");
        let mut rows = wang_rows();
        rows[1].cells[9] = Cell::Text("男".into());
        assert_eq!(issues_of(&rows)[0].1, "性别");
        assert_eq!(parse_date("1980年1月2日").as_deref(), Some("1980-01-02"));
        assert_eq!(parse_date("19800102").as_deref(), Some("1980-01-02"));
        assert_eq!(parse_date("80-1-2"), None);
    }

    #[test]
    fn an_id_number_stored_as_a_number_is_refused_with_advice() {
        let mut rows = wang_rows();
        rows[0].cells[10] = Cell::Number(110105196001010000.0);
        let issues = issues_of(&rows);
        assert_eq!(issues[0].1, "证件号码");
        assert!(issues[0].2.contains("文本"), "{issues:?}");
    }

    #[test]
    fn unknown_township_and_village_are_named() {
        let mut rows = wang_rows();
        rows[0].cells[2] = Cell::Text("北村".into());
        let issues = issues_of(&rows);
        assert_eq!(issues.len(), 1, "only the bad row: {issues:?}");
        assert_eq!((issues[0].0, issues[0].1.as_str()), (2, "行政村"));
        let mut rows = wang_rows();
        rows[1].cells[1] = Cell::Text("不存在镇".into());
        assert_eq!(issues_of(&rows)[0].1, "乡镇");
    }

    #[test]
    fn duplicates_heads_and_household_columns_are_checked_across_rows() {
        let mut rows = wang_rows();
        rows[1].cells[10] = rows[0].cells[10].clone();
        rows[1].cells[11] = Cell::Text("1960-01-01".into());
        rows[1].cells[9] = Cell::Text("男".into());
        let issues = issues_of(&rows);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].2.contains("第2行"), "{issues:?}");

        let mut rows = wang_rows();
        rows[1].cells[8] = Cell::Text("户主".into());
        let issues = issues_of(&rows);
        assert_eq!((issues[0].0, issues[0].1.as_str()), (3, "与户主关系"));

        let mut rows = wang_rows();
        rows[0].cells[8] = Cell::Text("之子".into());
        let issues = issues_of(&rows);
        assert_eq!((issues[0].0, issues[0].1.as_str()), (2, "与户主关系"));
        assert!(issues[0].2.contains("没有"));

        let mut rows = wang_rows();
        rows[1].cells[4] = Cell::Text("13900002222".into());
        let issues = issues_of(&rows);
        assert_eq!((issues[0].0, issues[0].1.as_str()), (3, "联系电话"));

        let mut rows = wang_rows();
        rows[0].cells[3] = Cell::Text("王小山".into());
        rows[1].cells[3] = Cell::Text("王小山".into());
        let issues = issues_of(&rows);
        assert_eq!((issues[0].0, issues[0].1.as_str()), (2, "户主姓名"));
    }

    #[test]
    fn an_id_number_of_another_stored_household_is_a_duplicate() {
        let first = validate_rows(&wang_rows(), &columns(), &county(), &mut |_| {});
        let mut counter = 0;
        let plan = diff(&first.households, &[], &mut || {
            counter += 1;
            format!("id-{counter}")
        });
        let mut stored = county();
        stored.households = plan.new_households;
        let mut rows = wang_rows();
        for row in &mut rows {
            row.cells[0] = Cell::Text("H2".into());
        }
        let validated = validate_rows(&rows, &columns(), &stored, &mut |_| {});
        assert_eq!(validated.bad_row_count(), 2);
        assert!(validated.issues[0].reason.contains("H1"));
        assert!(validated.households.is_empty());
    }

    #[test]
    fn the_same_file_again_changes_nothing_and_an_edit_changes_only_that_field() {
        let validated = validate_rows(&wang_rows(), &columns(), &county(), &mut |_| {});
        let mut counter = 0;
        let mut new_id = || {
            counter += 1;
            format!("id-{counter}")
        };
        let stored = diff(&validated.households, &[], &mut new_id).new_households;
        let again = diff(&validated.households, &stored, &mut new_id);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.unchanged_rows, 2);

        let mut rows = wang_rows();
        rows[1].cells[12] = Cell::Text("患有大病".into());
        rows.push(row(
            4,
            "H1",
            "东村",
            "王大山",
            "王小明",
            "之子",
            "男",
            &id("11010520100303003"),
            "2010-03-03",
            "健康",
        ));
        let validated = validate_rows(&rows, &columns(), &county(), &mut |_| {});
        assert!(validated.issues.is_empty(), "{:?}", validated.issues);
        let plan = diff(&validated.households, &stored, &mut new_id);
        assert_eq!(plan.field_changes.len(), 1, "{:?}", plan.field_changes);
        let change = &plan.field_changes[0];
        assert_eq!(change.field, "health");
        assert_eq!(change.new_value, json!(Health::SeriousIllness.code()));
        assert_eq!(change.row_number, 3);
        assert_eq!(plan.new_members.len(), 1);
        assert_eq!(plan.unchanged_rows, 1);
    }

    #[test]
    fn every_template_column_has_a_unique_header_and_a_note() {
        let mut headers: Vec<&str> = Column::ALL
            .iter()
            .map(|column| column.header_zh())
            .collect();
        headers.sort_unstable();
        headers.dedup();
        assert_eq!(headers.len(), Column::ALL.len());
        assert!(
            Column::ALL
                .iter()
                .all(|column| !column.note_zh().is_empty())
        );
    }
}
