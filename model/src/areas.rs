//! Administrative areas (行政区划) and their import: the structure of the 12-digit
//! 统计用区划代码, the village attributes (村级属性) of domain reference §1.2, the import
//! template's columns, pure validation of each sheet row, and the diff of the file against
//! the stored areas.
//!
//! A 统计用区划代码 has no check digit: it is 2 province, 2 city, 2 county, 3 township and
//! 3 village digits, and a code's level is read from its trailing zeros (a county code
//! ends in 000000, a township code in 000). So "a bad code" means a code that is not twelve
//! digits, is not a county, township or village code, or lies outside the importing
//! county; a code's parent is its prefix padded with zeros, so a parent column can only
//! agree with the code or contradict it.
//!
//! Nothing here reads files or touches storage: the server turns XLSX/CSV into
//! [`SheetRow`]s, hands over the county's stored areas, and stores the [`AreaImportPlan`]
//! this module computes. Blank cells never erase a stored value (a file that leaves a
//! column empty changes nothing there), and an area missing from the file is reported,
//! never deleted: households, cadres and visits refer to it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::codes::Crs;
use crate::geo::{in_gcj02_area, is_valid_coordinate};
use crate::household::GeoPoint;
use crate::roster::{Cell, HeaderError, SheetRow, normalise_header};

/// Largest number of data rows one area file may hold (a county has a few hundred
/// villages; the largest ones have a few thousand).
pub const MAX_AREA_ROWS: usize = 20_000;

/// Longest area name accepted (the longest official names are about 20 characters).
const MAX_NAME_CHARS: usize = 40;

// ---- codes and levels ------------------------------------------------------------------

/// 层级: the levels an importing county holds. Province and city codes are above the
/// county and never imported; 村民小组 have no statistical code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaLevel {
    /// 县 (also 县级市, 区 and 旗).
    County,
    /// 乡镇 (also 街道).
    Township,
    /// 行政村 (also 社区/居委会).
    Village,
}

impl AreaLevel {
    /// The stored name (`areas.level`).
    pub fn as_str(self) -> &'static str {
        match self {
            AreaLevel::County => "county",
            AreaLevel::Township => "township",
            AreaLevel::Village => "village",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            AreaLevel::County => "县",
            AreaLevel::Township => "乡镇",
            AreaLevel::Village => "村",
        }
    }

    /// The stored name back; `None` for anything else.
    pub fn from_stored(text: &str) -> Option<AreaLevel> {
        match text {
            "county" => Some(AreaLevel::County),
            "township" => Some(AreaLevel::Township),
            "village" => Some(AreaLevel::Village),
            _ => None,
        }
    }

    /// The words officials write in a 层级 column.
    fn parse_cell(text: &str) -> Option<AreaLevel> {
        match text.trim() {
            "县" | "县级" | "县区" | "区" | "旗" | "县级市" | "county" | "County" => {
                Some(AreaLevel::County)
            }
            "乡" | "镇" | "乡镇" | "乡级" | "街道" | "乡镇街道" | "township" | "Township" => {
                Some(AreaLevel::Township)
            }
            "村" | "行政村" | "村级" | "社区" | "居委会" | "村委会" | "village" | "Village" => {
                Some(AreaLevel::Village)
            }
            _ => None,
        }
    }
}

/// Why a text is not an area code the import can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaCodeError {
    #[error("区划代码应为12位数字（实为“{0}”） (the code must be 12 digits)")]
    NotTwelveDigits(String),
    #[error("“{0}”是省级或市级代码，不是县、乡镇或村的代码 (a province or city code)")]
    AboveCounty(String),
}

/// The level of a 12-digit code, read from its structure.
pub fn level_of_code(code: &str) -> Result<AreaLevel, AreaCodeError> {
    if code.len() != 12 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(AreaCodeError::NotTwelveDigits(code.to_owned()));
    }
    if &code[0..2] == "00" || &code[4..6] == "00" {
        return Err(AreaCodeError::AboveCounty(code.to_owned()));
    }
    if code.ends_with("000000") {
        Ok(AreaLevel::County)
    } else if code.ends_with("000") {
        Ok(AreaLevel::Township)
    } else {
        Ok(AreaLevel::Village)
    }
}

/// The code of the area a code belongs to: a township's county, a village's township; a
/// county's parent (the city) is outside the import, so `None`. Also `None` for a text too
/// short to be a code (callers pass codes [`level_of_code`] accepted).
pub fn parent_code(code: &str, level: AreaLevel) -> Option<String> {
    match level {
        AreaLevel::County => None,
        AreaLevel::Township => code.get(..6).map(|prefix| format!("{prefix}000000")),
        AreaLevel::Village => code.get(..9).map(|prefix| format!("{prefix}000")),
    }
}

// ---- village attributes ----------------------------------------------------------------

/// 村级属性: the village attributes of domain reference §1.2 that a county keeps in a
/// spreadsheet. `None` is "not known". They describe the village as of the latest import
/// (the reference suggests per-year rows; one current row is what the console shows today).
/// Left out on purpose: 贫困发生率 (derived from the counts), 饮水安全户数 (a household
/// fact the wellbeing checks already hold), 帮扶单位 and 驻村工作队 (cadre-roster data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VillageAttributes {
    /// 贫困村 (true) or 非贫困村 (false).
    pub is_poor_village: Option<bool>,
    /// 深度贫困村.
    pub is_deep_poor: Option<bool>,
    /// 出列年份: the year a poor village exited.
    pub exit_year: Option<i64>,
    /// 户籍人口.
    pub population: Option<i64>,
    /// 总户数.
    pub households: Option<i64>,
    /// 建档立卡贫困户数.
    pub poor_households: Option<i64>,
    /// 村集体经济收入, in whole yuan (the sheet writes 万元).
    pub collective_income_yuan: Option<i64>,
    /// 有农民专业合作社.
    pub has_cooperative: Option<bool>,
    /// 有互助资金 (村级互助资金).
    pub has_mutual_fund: Option<bool>,
    /// 通硬化路.
    pub road_paved: Option<bool>,
    /// 通宽带.
    pub broadband: Option<bool>,
    /// 有标准化卫生室.
    pub standard_clinic: Option<bool>,
    /// 有文化室.
    pub culture_room: Option<bool>,
}

/// One village attribute, so the template, the diff and the console can walk them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    PoorVillage,
    DeepPoor,
    ExitYear,
    Population,
    Households,
    PoorHouseholds,
    CollectiveIncome,
    Cooperative,
    MutualFund,
    RoadPaved,
    Broadband,
    StandardClinic,
    CultureRoom,
}

/// How an attribute's cell is written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttributeKind {
    Flag,
    Year,
    Count,
    /// 万元 in the sheet, yuan in storage.
    TenThousandYuan,
}

impl Attribute {
    pub const ALL: &'static [Attribute] = &[
        Attribute::PoorVillage,
        Attribute::DeepPoor,
        Attribute::ExitYear,
        Attribute::Population,
        Attribute::Households,
        Attribute::PoorHouseholds,
        Attribute::CollectiveIncome,
        Attribute::Cooperative,
        Attribute::MutualFund,
        Attribute::RoadPaved,
        Attribute::Broadband,
        Attribute::StandardClinic,
        Attribute::CultureRoom,
    ];

    /// The field name in storage and JSON.
    pub fn key(self) -> &'static str {
        match self {
            Attribute::PoorVillage => "is_poor_village",
            Attribute::DeepPoor => "is_deep_poor",
            Attribute::ExitYear => "exit_year",
            Attribute::Population => "population",
            Attribute::Households => "households",
            Attribute::PoorHouseholds => "poor_households",
            Attribute::CollectiveIncome => "collective_income_yuan",
            Attribute::Cooperative => "has_cooperative",
            Attribute::MutualFund => "has_mutual_fund",
            Attribute::RoadPaved => "road_paved",
            Attribute::Broadband => "broadband",
            Attribute::StandardClinic => "standard_clinic",
            Attribute::CultureRoom => "culture_room",
        }
    }

    /// Short label for the console's columns.
    pub fn label_zh(self) -> &'static str {
        match self {
            Attribute::PoorVillage => "贫困村",
            Attribute::DeepPoor => "深度贫困村",
            Attribute::ExitYear => "出列年份",
            Attribute::Population => "户籍人口",
            Attribute::Households => "总户数",
            Attribute::PoorHouseholds => "贫困户数",
            Attribute::CollectiveIncome => "村集体收入",
            Attribute::Cooperative => "合作社",
            Attribute::MutualFund => "互助资金",
            Attribute::RoadPaved => "通硬化路",
            Attribute::Broadband => "通宽带",
            Attribute::StandardClinic => "标准化卫生室",
            Attribute::CultureRoom => "文化室",
        }
    }

    fn kind(self) -> AttributeKind {
        match self {
            Attribute::ExitYear => AttributeKind::Year,
            Attribute::Population | Attribute::Households | Attribute::PoorHouseholds => {
                AttributeKind::Count
            }
            Attribute::CollectiveIncome => AttributeKind::TenThousandYuan,
            _ => AttributeKind::Flag,
        }
    }

    /// The attribute as a number (flags 0/1), for generic comparison and storage.
    pub fn get(self, attributes: &VillageAttributes) -> Option<i64> {
        let flag = |value: Option<bool>| value.map(i64::from);
        match self {
            Attribute::PoorVillage => flag(attributes.is_poor_village),
            Attribute::DeepPoor => flag(attributes.is_deep_poor),
            Attribute::ExitYear => attributes.exit_year,
            Attribute::Population => attributes.population,
            Attribute::Households => attributes.households,
            Attribute::PoorHouseholds => attributes.poor_households,
            Attribute::CollectiveIncome => attributes.collective_income_yuan,
            Attribute::Cooperative => flag(attributes.has_cooperative),
            Attribute::MutualFund => flag(attributes.has_mutual_fund),
            Attribute::RoadPaved => flag(attributes.road_paved),
            Attribute::Broadband => flag(attributes.broadband),
            Attribute::StandardClinic => flag(attributes.standard_clinic),
            Attribute::CultureRoom => flag(attributes.culture_room),
        }
    }

    /// Set the attribute from its number (flags: non-zero is true).
    pub fn set(self, attributes: &mut VillageAttributes, value: Option<i64>) {
        let flag = value.map(|number| number != 0);
        match self {
            Attribute::PoorVillage => attributes.is_poor_village = flag,
            Attribute::DeepPoor => attributes.is_deep_poor = flag,
            Attribute::ExitYear => attributes.exit_year = value,
            Attribute::Population => attributes.population = value,
            Attribute::Households => attributes.households = value,
            Attribute::PoorHouseholds => attributes.poor_households = value,
            Attribute::CollectiveIncome => attributes.collective_income_yuan = value,
            Attribute::Cooperative => attributes.has_cooperative = flag,
            Attribute::MutualFund => attributes.has_mutual_fund = flag,
            Attribute::RoadPaved => attributes.road_paved = flag,
            Attribute::Broadband => attributes.broadband = flag,
            Attribute::StandardClinic => attributes.standard_clinic = flag,
            Attribute::CultureRoom => attributes.culture_room = flag,
        }
    }

    /// The value in words, as the console and the change list show it.
    pub fn display_zh(self, value: Option<i64>) -> String {
        let Some(number) = value else {
            return String::new();
        };
        match (self, self.kind()) {
            (Attribute::PoorVillage, _) => if number != 0 {
                "贫困村"
            } else {
                "非贫困村"
            }
            .into(),
            (_, AttributeKind::Flag) => if number != 0 { "是" } else { "否" }.into(),
            (_, AttributeKind::TenThousandYuan) => {
                let ten_thousands = number as f64 / 10_000.0;
                format!("{ten_thousands}万元")
            }
            _ => number.to_string(),
        }
    }

    /// Whether any attribute is known.
    pub fn any_known(attributes: &VillageAttributes) -> bool {
        Attribute::ALL
            .iter()
            .any(|attribute| attribute.get(attributes).is_some())
    }
}

// ---- stored areas ----------------------------------------------------------------------

/// An area as stored: what the import compares the file with and writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaEntry {
    /// The 12-digit 统计用区划代码 (areas imported by earlier versions may use other ids).
    pub area_id: String,
    pub name: String,
    pub level: AreaLevel,
    pub parent_id: Option<String>,
    /// 中心点, in the coordinate system the file declared.
    pub centre: Option<GeoPoint>,
    /// Only villages have attributes; other levels keep the default (all unknown).
    pub attributes: VillageAttributes,
}

// ---- the template's columns ------------------------------------------------------------

/// One column of the area template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AreaColumn {
    Code,
    Name,
    Level,
    ParentCode,
    Latitude,
    Longitude,
    Crs,
    Attribute(Attribute),
}

impl AreaColumn {
    /// Every column, in template order.
    pub const ALL: &'static [AreaColumn] = &[
        AreaColumn::Code,
        AreaColumn::Name,
        AreaColumn::Level,
        AreaColumn::ParentCode,
        AreaColumn::Latitude,
        AreaColumn::Longitude,
        AreaColumn::Crs,
        AreaColumn::Attribute(Attribute::PoorVillage),
        AreaColumn::Attribute(Attribute::DeepPoor),
        AreaColumn::Attribute(Attribute::ExitYear),
        AreaColumn::Attribute(Attribute::Population),
        AreaColumn::Attribute(Attribute::Households),
        AreaColumn::Attribute(Attribute::PoorHouseholds),
        AreaColumn::Attribute(Attribute::CollectiveIncome),
        AreaColumn::Attribute(Attribute::Cooperative),
        AreaColumn::Attribute(Attribute::MutualFund),
        AreaColumn::Attribute(Attribute::RoadPaved),
        AreaColumn::Attribute(Attribute::Broadband),
        AreaColumn::Attribute(Attribute::StandardClinic),
        AreaColumn::Attribute(Attribute::CultureRoom),
    ];

    /// The header the template writes.
    pub fn header_zh(self) -> &'static str {
        match self {
            AreaColumn::Code => "统计用区划代码",
            AreaColumn::Name => "名称",
            AreaColumn::Level => "层级",
            AreaColumn::ParentCode => "上级区划代码",
            AreaColumn::Latitude => "中心点纬度",
            AreaColumn::Longitude => "中心点经度",
            AreaColumn::Crs => "坐标系",
            AreaColumn::Attribute(attribute) => match attribute {
                Attribute::PoorVillage => "贫困村",
                Attribute::DeepPoor => "深度贫困村",
                Attribute::ExitYear => "出列年份",
                Attribute::Population => "户籍人口",
                Attribute::Households => "总户数",
                Attribute::PoorHouseholds => "建档立卡贫困户数",
                Attribute::CollectiveIncome => "村集体经济收入（万元）",
                Attribute::Cooperative => "有农民专业合作社",
                Attribute::MutualFund => "有互助资金",
                Attribute::RoadPaved => "通硬化路",
                Attribute::Broadband => "通宽带",
                Attribute::StandardClinic => "有标准化卫生室",
                Attribute::CultureRoom => "有文化室",
            },
        }
    }

    /// The column name in English (for the English half of each issue).
    pub fn name_en(self) -> &'static str {
        match self {
            AreaColumn::Code => "code",
            AreaColumn::Name => "name",
            AreaColumn::Level => "level",
            AreaColumn::ParentCode => "parent code",
            AreaColumn::Latitude => "centre latitude",
            AreaColumn::Longitude => "centre longitude",
            AreaColumn::Crs => "coordinate system",
            AreaColumn::Attribute(attribute) => attribute.key(),
        }
    }

    /// Other headers that mean the same column in sheets seen in the field.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            AreaColumn::Code => &[
                "区划代码",
                "行政区划代码",
                "统计用区划和城乡划分代码",
                "代码",
            ],
            AreaColumn::Name => &["区划名称", "单位名称", "名字"],
            AreaColumn::Level => &["级别", "区划级别"],
            AreaColumn::ParentCode => &["上级代码", "上级区划"],
            AreaColumn::Latitude => &["纬度"],
            AreaColumn::Longitude => &["经度"],
            AreaColumn::Crs => &["坐标系统"],
            AreaColumn::Attribute(attribute) => match attribute {
                Attribute::PoorVillage => &["是否贫困村", "贫困村/非贫困村", "村类型"],
                Attribute::DeepPoor => &["是否深度贫困村"],
                Attribute::ExitYear => &["出列年度", "贫困村出列年份"],
                Attribute::Population => &["人口", "总人口"],
                Attribute::Households => &["户数"],
                Attribute::PoorHouseholds => &["贫困户数"],
                Attribute::CollectiveIncome => &["村集体收入(万元)", "村集体经济收入"],
                Attribute::Cooperative => &["合作社", "有合作社"],
                Attribute::MutualFund => &["互助资金"],
                Attribute::RoadPaved => &["通硬化路面"],
                Attribute::Broadband => &["宽带"],
                Attribute::StandardClinic => &["标准化卫生室"],
                Attribute::CultureRoom => &["文化室"],
            },
        }
    }

    /// Only the code and the name must be there; every other column is optional, and an
    /// absent one leaves the stored value untouched.
    pub fn required(self) -> bool {
        matches!(self, AreaColumn::Code | AreaColumn::Name)
    }

    /// What the cell may hold, for the template's notes row and the documentation.
    pub fn note_zh(self) -> &'static str {
        match self {
            AreaColumn::Code => "必填；12位统计用区划代码（文本格式），县000000结尾，乡镇000结尾",
            AreaColumn::Name => "必填；县、乡镇或行政村名称",
            AreaColumn::Level => "选填：县/乡镇/村；须与代码一致",
            AreaColumn::ParentCode => "选填；须与代码前缀一致",
            AreaColumn::Latitude => "选填；村中心点纬度（度）",
            AreaColumn::Longitude => "选填；村中心点经度（度）",
            AreaColumn::Crs => "有坐标时必填：WGS-84 或 GCJ-02，全文件一致",
            AreaColumn::Attribute(attribute) => match attribute.kind() {
                AttributeKind::Flag if attribute == Attribute::PoorVillage => {
                    "仅村填写：贫困村/非贫困村（或 是/否）"
                }
                AttributeKind::Flag => "仅村填写：是/否",
                AttributeKind::Year => "仅村填写：四位年份，如2019",
                AttributeKind::Count => "仅村填写：非负整数",
                AttributeKind::TenThousandYuan => "仅村填写：万元，可带小数",
            },
        }
    }
}

/// Where each template column sits in the file (headers are matched by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaColumnMap {
    positions: BTreeMap<AreaColumn, usize>,
}

impl AreaColumnMap {
    pub fn position(&self, column: AreaColumn) -> Option<usize> {
        self.positions.get(&column).copied()
    }

    pub fn has(&self, column: AreaColumn) -> bool {
        self.positions.contains_key(&column)
    }
}

/// Match the header row's cells to template columns by name. Unknown headers are ignored.
pub fn map_area_headers(headers: &[String]) -> Result<AreaColumnMap, HeaderError> {
    let mut map = AreaColumnMap::default();
    for (position, header) in headers.iter().enumerate() {
        let header = normalise_header(header);
        if header.is_empty() {
            continue;
        }
        let column = AreaColumn::ALL.iter().copied().find(|column| {
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
    let missing: Vec<String> = AreaColumn::ALL
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

/// The template's notes row (a code cell starting with "说明：") is not data, so an official
/// can fill the template in without deleting it.
pub fn is_template_note(row: &SheetRow, columns: &AreaColumnMap) -> bool {
    columns
        .position(AreaColumn::Code)
        .and_then(|position| row.cells.get(position))
        .is_some_and(|cell| cell.text().starts_with("说明："))
}

// ---- issues ----------------------------------------------------------------------------

/// What kind of problem a row has (the JSON twin's machine-readable `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    RequiredEmpty,
    BadCode,
    OutsideCounty,
    LevelMismatch,
    ParentMismatch,
    MissingParent,
    DuplicateCode,
    DuplicateName,
    BadName,
    BadCoordinate,
    /// A warning: the point is possible but not in China (a swapped lat/lon, usually).
    OutsideChina,
    BadCrs,
    BadAttribute,
    AttributeNotForLevel,
}

/// One problem of one cell, in Chinese for the official and in English for the log and
/// the developer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaIssue {
    /// Row number as Excel shows it.
    pub row_number: u32,
    /// The template header of the column.
    pub column: String,
    pub kind: IssueKind,
    /// Why, in Simplified Chinese.
    pub reason: String,
    /// Why, in English.
    pub reason_en: String,
}

/// A row's issues as they are found: column, kind, Chinese and English reasons.
type CellIssues = Vec<(AreaColumn, IssueKind, String, String)>;

// ---- validation ------------------------------------------------------------------------

/// What the import validates against: the county (its 12-digit code) and every stored area
/// of it (the county, its townships and their villages).
#[derive(Debug, Clone, Default)]
pub struct CountyAreas {
    pub county_id: String,
    pub stored: Vec<AreaEntry>,
}

/// One valid row: the area as the file gives it. `centre` and each attribute are `None`
/// when the file leaves them blank (or lacks the column): the stored value then stays.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportArea {
    pub row_number: u32,
    pub area_id: String,
    pub name: String,
    pub level: AreaLevel,
    pub parent_id: Option<String>,
    pub centre: Option<GeoPoint>,
    pub attributes: VillageAttributes,
}

/// Result of validating every row.
#[derive(Debug, Clone, Default)]
pub struct AreasValidated {
    pub data_rows: u64,
    /// Every refused cell, by row and then template column. Any error blocks the apply.
    pub issues: Vec<AreaIssue>,
    /// Reported but not blocking (coordinates outside China).
    pub warnings: Vec<AreaIssue>,
    /// Rows without any error, in file order.
    pub areas: Vec<ImportArea>,
    /// The coordinate system the file declared (the first one stated).
    pub crs: Option<Crs>,
}

impl AreasValidated {
    /// How many distinct rows have at least one error.
    pub fn bad_row_count(&self) -> usize {
        let rows: HashSet<u32> = self.issues.iter().map(|issue| issue.row_number).collect();
        rows.len()
    }
}

/// A row after its own checks, before the checks across rows.
struct ParsedAreaRow {
    row_number: u32,
    /// The code when it is a well-formed county, township or village code.
    code: Option<(String, AreaLevel)>,
    name: Option<String>,
    centre: Option<(f64, f64)>,
    stated_crs: Option<Crs>,
    attributes: VillageAttributes,
    issues: CellIssues,
}

fn cell<'r>(row: &'r SheetRow, columns: &AreaColumnMap, column: AreaColumn) -> Option<&'r Cell> {
    columns
        .position(column)
        .map(|position| row.cells.get(position).unwrap_or(&Cell::Empty))
}

fn cell_text(row: &SheetRow, columns: &AreaColumnMap, column: AreaColumn) -> String {
    cell(row, columns, column)
        .map(Cell::text)
        .unwrap_or_default()
}

/// Validate every data row against the template rules, the county and the stored areas.
/// `on_progress` is called with the number of rows validated so far.
pub fn validate_area_rows(
    rows: &[SheetRow],
    columns: &AreaColumnMap,
    county: &CountyAreas,
    on_progress: &mut dyn FnMut(u64),
) -> AreasValidated {
    let mut parsed: Vec<ParsedAreaRow> = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if row.is_blank() || is_template_note(row, columns) {
            continue;
        }
        parsed.push(parse_row(row, columns, &county.county_id));
        if (index + 1) % 1_000 == 0 {
            on_progress((index + 1) as u64);
        }
    }
    let crs = cross_row_checks(&mut parsed, columns, county);
    on_progress(rows.len() as u64);

    let mut issues = Vec::new();
    let mut warnings = Vec::new();
    let mut areas = Vec::new();
    for mut row in parsed {
        row.issues.sort_by_key(|(column, ..)| *column);
        row.issues.dedup();
        let mut has_error = false;
        for (column, kind, reason, reason_en) in row.issues {
            let issue = AreaIssue {
                row_number: row.row_number,
                column: column.header_zh().to_owned(),
                kind,
                reason,
                reason_en: format!("row {}, {}: {reason_en}", row.row_number, column.name_en()),
            };
            if kind == IssueKind::OutsideChina {
                warnings.push(issue);
            } else {
                has_error = true;
                issues.push(issue);
            }
        }
        if has_error {
            continue;
        }
        let (Some((code, level)), Some(name)) = (row.code, row.name) else {
            continue;
        };
        let centre = match (row.centre, crs) {
            (Some((lat, lon)), Some(crs)) => Some(GeoPoint { lat, lon, crs }),
            _ => None,
        };
        areas.push(ImportArea {
            row_number: row.row_number,
            parent_id: parent_code(&code, level),
            area_id: code,
            name,
            level,
            centre,
            attributes: row.attributes,
        });
    }
    AreasValidated {
        data_rows: rows
            .iter()
            .filter(|row| !row.is_blank() && !is_template_note(row, columns))
            .count() as u64,
        issues,
        warnings,
        areas,
        crs,
    }
}

fn parse_row(row: &SheetRow, columns: &AreaColumnMap, county_id: &str) -> ParsedAreaRow {
    let mut issues: CellIssues = Vec::new();
    let code = parse_code(row, columns, county_id, &mut issues);
    let name = cell_text(row, columns, AreaColumn::Name);
    let name = if name.is_empty() {
        issues.push(required_empty(AreaColumn::Name));
        None
    } else if name.chars().count() > MAX_NAME_CHARS {
        issues.push((
            AreaColumn::Name,
            IssueKind::BadName,
            format!("名称不能超过{MAX_NAME_CHARS}个字"),
            format!("longer than {MAX_NAME_CHARS} characters"),
        ));
        None
    } else {
        Some(name)
    };
    let (centre, stated_crs) = parse_centre(row, columns, &mut issues);
    let level = code.as_ref().map(|(_, level)| *level);
    let attributes = parse_attributes(row, columns, level, &mut issues);
    ParsedAreaRow {
        row_number: row.row_number,
        code,
        name,
        centre,
        stated_crs,
        attributes,
        issues,
    }
}

fn required_empty(column: AreaColumn) -> (AreaColumn, IssueKind, String, String) {
    (
        column,
        IssueKind::RequiredEmpty,
        "必填项为空".into(),
        "required cell is empty".into(),
    )
}

/// The code cell, its level, and the level and parent columns that must agree with it.
fn parse_code(
    row: &SheetRow,
    columns: &AreaColumnMap,
    county_id: &str,
    issues: &mut CellIssues,
) -> Option<(String, AreaLevel)> {
    let text = cell_text(row, columns, AreaColumn::Code);
    if text.is_empty() {
        issues.push(required_empty(AreaColumn::Code));
        return None;
    }
    if let Some(Cell::Number(number)) = cell(row, columns, AreaColumn::Code)
        && (*number >= 1e15 || number.fract() != 0.0)
    {
        issues.push((
            AreaColumn::Code,
            IssueKind::BadCode,
            "区划代码被 Excel 存成了数值，末位可能已丢失：请将该列设为文本格式后重新填写".into(),
            "the code was stored as a number and may have lost digits; format the column as text"
                .into(),
        ));
        return None;
    }
    let level = match level_of_code(&text) {
        Ok(level) => level,
        Err(error) => {
            let english = match &error {
                AreaCodeError::NotTwelveDigits(_) => format!("“{text}” is not 12 digits"),
                AreaCodeError::AboveCounty(_) => {
                    format!("{text} is a province or city code, not a county, township or village")
                }
            };
            let chinese = error.to_string();
            let chinese = chinese
                .split(" (")
                .next()
                .unwrap_or(chinese.as_str())
                .to_owned();
            issues.push((AreaColumn::Code, IssueKind::BadCode, chinese, english));
            return None;
        }
    };
    let county_prefix = county_id.get(..6).unwrap_or(county_id);
    let outside = if level == AreaLevel::County {
        text != county_id
    } else {
        !text.starts_with(county_prefix) || county_id.len() != 12
    };
    if outside {
        issues.push((
            AreaColumn::Code,
            IssueKind::OutsideCounty,
            format!("代码{text}不属于本县（{county_id}）"),
            format!("{text} is outside this server's county {county_id}"),
        ));
        return None;
    }
    let declared_level = cell_text(row, columns, AreaColumn::Level);
    if !declared_level.is_empty() {
        match AreaLevel::parse_cell(&declared_level) {
            None => issues.push((
                AreaColumn::Level,
                IssueKind::LevelMismatch,
                format!("“{declared_level}”不是有效的层级；可选：县、乡镇、村"),
                format!("“{declared_level}” is not a level (county, township, village)"),
            )),
            Some(declared) if declared != level => issues.push((
                AreaColumn::Level,
                IssueKind::LevelMismatch,
                format!(
                    "层级“{declared_level}”与代码{text}不符：该代码是{}级代码",
                    level.label_zh()
                ),
                format!(
                    "declared level {} but {text} is a {} code",
                    declared.as_str(),
                    level.as_str()
                ),
            )),
            Some(_) => {}
        }
    }
    let declared_parent = cell_text(row, columns, AreaColumn::ParentCode);
    if !declared_parent.is_empty() {
        let derived = parent_code(&text, level);
        if derived.as_deref() != Some(declared_parent.as_str()) {
            let derived_zh = derived
                .clone()
                .unwrap_or_else(|| "（无：县为最高层级）".into());
            issues.push((
                AreaColumn::ParentCode,
                IssueKind::ParentMismatch,
                format!("上级区划代码{declared_parent}与代码{text}不符：应为{derived_zh}"),
                format!(
                    "parent {declared_parent} contradicts {text}, whose parent is {}",
                    derived.unwrap_or_else(|| "none".into())
                ),
            ));
        }
    }
    Some((text, level))
}

fn parse_crs(text: &str) -> Result<Crs, (String, String)> {
    let normalised: String = text
        .chars()
        .filter(|character| !matches!(character, '-' | '_' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    match normalised.as_str() {
        "WGS84" | "GPS" | "WGS1984" | "EPSG4326" => Ok(Crs::Wgs84),
        "GCJ02" | "火星坐标" | "高德" | "国测局坐标" => Ok(Crs::Gcj02),
        "BD09" | "百度" | "BD09LL" => Err((
            "不支持百度坐标（BD-09）：请转换为 WGS-84 或 GCJ-02".into(),
            "BD-09 (Baidu) is not accepted; convert to WGS-84 or GCJ-02".into(),
        )),
        _ => Err((
            format!("“{text}”不是可识别的坐标系；可选：WGS-84、GCJ-02"),
            format!("“{text}” is not a coordinate system (WGS-84 or GCJ-02)"),
        )),
    }
}

fn parse_degrees(text: &str) -> Option<f64> {
    text.trim()
        .trim_end_matches('°')
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
}

/// The centre point (both halves or neither) and the coordinate system the row states.
fn parse_centre(
    row: &SheetRow,
    columns: &AreaColumnMap,
    issues: &mut CellIssues,
) -> (Option<(f64, f64)>, Option<Crs>) {
    let lat_text = cell_text(row, columns, AreaColumn::Latitude);
    let lon_text = cell_text(row, columns, AreaColumn::Longitude);
    let crs_text = cell_text(row, columns, AreaColumn::Crs);
    let stated_crs = if crs_text.is_empty() {
        None
    } else {
        match parse_crs(&crs_text) {
            Ok(crs) => Some(crs),
            Err((chinese, english)) => {
                issues.push((AreaColumn::Crs, IssueKind::BadCrs, chinese, english));
                None
            }
        }
    };
    if lat_text.is_empty() && lon_text.is_empty() {
        return (None, stated_crs);
    }
    let mut half = |column: AreaColumn, text: &str| -> Option<f64> {
        if text.is_empty() {
            issues.push((
                column,
                IssueKind::BadCoordinate,
                "经度和纬度须同时填写".into(),
                "latitude and longitude go together".into(),
            ));
            return None;
        }
        let value = parse_degrees(text);
        if value.is_none() {
            issues.push((
                column,
                IssueKind::BadCoordinate,
                format!("“{text}”不是以度为单位的数字（如 26.38）"),
                format!("“{text}” is not a number of degrees"),
            ));
        }
        value
    };
    let lat = half(AreaColumn::Latitude, &lat_text);
    let lon = half(AreaColumn::Longitude, &lon_text);
    let (Some(lat), Some(lon)) = (lat, lon) else {
        return (None, stated_crs);
    };
    if !is_valid_coordinate(lat, lon) {
        issues.push((
            AreaColumn::Latitude,
            IssueKind::BadCoordinate,
            format!("坐标（{lat}, {lon}）不存在：纬度应在±90之间，经度应在±180之间"),
            format!("({lat}, {lon}) is not a point on Earth"),
        ));
        return (None, stated_crs);
    }
    if !in_gcj02_area(lat, lon) {
        issues.push((
            AreaColumn::Latitude,
            IssueKind::OutsideChina,
            format!("坐标（{lat}, {lon}）不在中国境内：请检查经纬度是否填反"),
            format!("({lat}, {lon}) is outside China; are latitude and longitude swapped?"),
        ));
    }
    if stated_crs.is_none() && !crs_text.is_empty() {
        return (None, None);
    }
    if stated_crs.is_none() {
        issues.push((
            AreaColumn::Crs,
            IssueKind::BadCrs,
            "填写了坐标但未声明坐标系：请填写 WGS-84 或 GCJ-02".into(),
            "a centre point needs its coordinate system (WGS-84 or GCJ-02)".into(),
        ));
    }
    (Some((lat, lon)), stated_crs)
}

fn parse_flag(attribute: Attribute, text: &str) -> Option<bool> {
    match text.trim() {
        "是" | "有" | "Y" | "y" | "yes" | "Yes" | "true" | "TRUE" | "1" | "√" => Some(true),
        "否" | "无" | "没有" | "N" | "n" | "no" | "No" | "false" | "FALSE" | "0" | "×" => {
            Some(false)
        }
        "贫困村" if attribute == Attribute::PoorVillage => Some(true),
        "非贫困村" if attribute == Attribute::PoorVillage => Some(false),
        "深度贫困村" if attribute == Attribute::DeepPoor => Some(true),
        _ => None,
    }
}

/// One attribute cell as its number, or the reason it is refused.
fn parse_attribute(attribute: Attribute, text: &str) -> Result<i64, (String, String)> {
    match attribute.kind() {
        AttributeKind::Flag => parse_flag(attribute, text).map(i64::from).ok_or_else(|| {
            let choices = if attribute == Attribute::PoorVillage {
                "贫困村、非贫困村、是、否"
            } else {
                "是、否"
            };
            (
                format!("“{text}”无法识别；可选：{choices}"),
                format!("“{text}” is not yes or no"),
            )
        }),
        AttributeKind::Year => text
            .trim()
            .trim_end_matches('年')
            .parse::<i64>()
            .ok()
            .filter(|year| (1949..=2100).contains(year))
            .ok_or_else(|| {
                (
                    format!("“{text}”不是四位年份（如2019）"),
                    format!("“{text}” is not a year"),
                )
            }),
        AttributeKind::Count => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|count| (0..=10_000_000).contains(count))
            .ok_or_else(|| {
                (
                    format!("“{text}”不是非负整数"),
                    format!("“{text}” is not a whole number of at least 0"),
                )
            }),
        AttributeKind::TenThousandYuan => text
            .trim()
            .trim_end_matches("万元")
            .parse::<f64>()
            .ok()
            .filter(|amount| amount.is_finite() && (0.0..=1_000_000.0).contains(amount))
            .map(|amount| (amount * 10_000.0).round() as i64)
            .ok_or_else(|| {
                (
                    format!("“{text}”不是以万元为单位的非负金额"),
                    format!("“{text}” is not an amount of 10,000 yuan of at least 0"),
                )
            }),
    }
}

fn parse_attributes(
    row: &SheetRow,
    columns: &AreaColumnMap,
    level: Option<AreaLevel>,
    issues: &mut CellIssues,
) -> VillageAttributes {
    let mut attributes = VillageAttributes::default();
    for attribute in Attribute::ALL {
        let column = AreaColumn::Attribute(*attribute);
        let text = cell_text(row, columns, column);
        if text.is_empty() {
            continue;
        }
        if level.is_some_and(|level| level != AreaLevel::Village) {
            issues.push((
                column,
                IssueKind::AttributeNotForLevel,
                "村级属性只能填在村一级的行上".into(),
                "village attributes belong on village rows only".into(),
            ));
            continue;
        }
        match parse_attribute(*attribute, &text) {
            Ok(value) => attribute.set(&mut attributes, Some(value)),
            Err((chinese, english)) => {
                issues.push((column, IssueKind::BadAttribute, chinese, english));
            }
        }
    }
    if let (Some(households), Some(poor)) = (attributes.households, attributes.poor_households)
        && poor > households
    {
        issues.push((
            AreaColumn::Attribute(Attribute::PoorHouseholds),
            IssueKind::BadAttribute,
            format!("贫困户数（{poor}）大于总户数（{households}）"),
            format!("{poor} poor households is more than {households} households"),
        ));
    }
    if attributes.is_deep_poor == Some(true) && attributes.is_poor_village == Some(false) {
        issues.push((
            AreaColumn::Attribute(Attribute::DeepPoor),
            IssueKind::BadAttribute,
            "非贫困村不能是深度贫困村".into(),
            "a village that is not poor cannot be deeply poor".into(),
        ));
    }
    attributes
}

/// Checks that need every row: duplicates, parents, names under one parent, and the one
/// coordinate system of the file. Returns the file's coordinate system.
fn cross_row_checks(
    parsed: &mut [ParsedAreaRow],
    columns: &AreaColumnMap,
    county: &CountyAreas,
) -> Option<Crs> {
    let stored: HashMap<&str, &AreaEntry> = county
        .stored
        .iter()
        .map(|area| (area.area_id.as_str(), area))
        .collect();

    // Duplicate codes: the first row keeps it, later rows name that row.
    let mut first_row_of: HashMap<String, u32> = HashMap::new();
    for row in parsed.iter_mut() {
        let Some((code, _)) = &row.code else {
            continue;
        };
        match first_row_of.get(code) {
            Some(first) => row.issues.push((
                AreaColumn::Code,
                IssueKind::DuplicateCode,
                format!("代码{code}与第{first}行重复"),
                format!("{code} already appears on row {first}"),
            )),
            None => {
                first_row_of.insert(code.clone(), row.row_number);
            }
        }
    }

    // Parents: in the file, or stored (the county itself always is).
    for row in parsed.iter_mut() {
        let Some((code, level)) = &row.code else {
            continue;
        };
        let Some(parent) = parent_code(code, *level) else {
            continue;
        };
        let known = parent == county.county_id
            || first_row_of.contains_key(&parent)
            || stored.contains_key(parent.as_str());
        if !known {
            let column = if columns.has(AreaColumn::ParentCode) {
                AreaColumn::ParentCode
            } else {
                AreaColumn::Code
            };
            row.issues.push((
                column,
                IssueKind::MissingParent,
                format!(
                    "上级{}（{parent}）既不在文件中，也不在系统中",
                    parent_level_zh(*level)
                ),
                format!("parent {parent} is neither in the file nor stored"),
            ));
        }
    }

    // Names under one parent must be unique: the roster import finds a village by its
    // township and name, so two 新村 in one township would be ambiguous. Stored areas not
    // in the file keep their names, so they count too.
    let mut name_owner: HashMap<(String, String), (String, Option<u32>)> = HashMap::new();
    for area in &county.stored {
        if first_row_of.contains_key(&area.area_id) {
            continue;
        }
        if let Some(parent) = &area.parent_id {
            name_owner.insert(
                (parent.clone(), area.name.clone()),
                (area.area_id.clone(), None),
            );
        }
    }
    for row in parsed.iter_mut() {
        let (Some((code, level)), Some(name)) = (&row.code, &row.name) else {
            continue;
        };
        let Some(parent) = parent_code(code, *level) else {
            continue;
        };
        match name_owner.get(&(parent.clone(), name.clone())) {
            Some((other_code, _)) if other_code == code => {}
            Some((other_code, other_row)) => {
                let where_zh = match other_row {
                    Some(row_number) => format!("第{row_number}行"),
                    None => "系统中".to_owned(),
                };
                row.issues.push((
                    AreaColumn::Name,
                    IssueKind::DuplicateName,
                    format!("同一上级下已有同名区划“{name}”（{where_zh}，代码{other_code}）"),
                    format!("“{name}” is also the name of {other_code} under the same parent"),
                ));
            }
            None => {
                name_owner.insert((parent, name.clone()), (code.clone(), Some(row.row_number)));
            }
        }
    }

    // One coordinate system per file: the first stated one is the file's.
    let file_crs = parsed.iter().find_map(|row| row.stated_crs);
    if let Some(file_crs) = file_crs {
        for row in parsed.iter_mut() {
            if let Some(stated) = row.stated_crs
                && stated != file_crs
            {
                row.issues.push((
                    AreaColumn::Crs,
                    IssueKind::BadCrs,
                    format!(
                        "同一文件只能使用一种坐标系：本文件为{}，此行为{}",
                        crs_label(file_crs),
                        crs_label(stated)
                    ),
                    format!(
                        "the file declares {}, this row {}",
                        crs_label(file_crs),
                        crs_label(stated)
                    ),
                ));
            }
        }
    }
    file_crs
}

fn parent_level_zh(level: AreaLevel) -> &'static str {
    match level {
        AreaLevel::Village => "乡镇",
        _ => "县",
    }
}

fn crs_label(crs: Crs) -> &'static str {
    match crs {
        Crs::Wgs84 => "WGS-84",
        Crs::Gcj02 => "GCJ-02",
        Crs::Bd09 => "BD-09",
    }
}

// ---- diff ------------------------------------------------------------------------------

/// One changed field of a stored area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaChange {
    pub row_number: u32,
    pub area_id: String,
    /// The area's name in the file.
    pub area_name: String,
    /// `name`, `centre` or an attribute key.
    pub field: String,
    /// The field in Chinese.
    pub field_zh: String,
    pub old_value: String,
    pub new_value: String,
}

/// A stored township or village that the file does not list (文件中缺少的村). It is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingArea {
    pub area_id: String,
    pub name: String,
    pub level: AreaLevel,
}

/// What an apply writes. Serde: a dry run's plan is stored until it is applied, so any
/// server replica can apply it (issue 15 §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AreaImportPlan {
    /// Areas to insert, parents before children (by code).
    pub new_areas: Vec<AreaEntry>,
    /// Stored areas with their new values (name, centre, attributes).
    pub updated_areas: Vec<AreaEntry>,
    /// Every changed field of `updated_areas`, for the preview.
    pub changes: Vec<AreaChange>,
    /// Stored townships and villages the file does not list: reported, never deleted.
    pub missing: Vec<MissingArea>,
    pub unchanged_rows: u64,
}

impl AreaImportPlan {
    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.new_areas.is_empty() && self.updated_areas.is_empty()
    }

    /// How many renamed areas (名称变更) the plan holds.
    pub fn renamed_count(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| change.field == "name")
            .count()
    }
}

fn centre_zh(centre: Option<&GeoPoint>) -> String {
    centre.map_or_else(String::new, |point| {
        format!("{}, {}（{}）", point.lat, point.lon, crs_label(point.crs))
    })
}

/// Compare the valid rows with the stored areas. Blank cells keep stored values; an area
/// the file does not list is reported in `missing`.
pub fn diff_areas(validated: &AreasValidated, county: &CountyAreas) -> AreaImportPlan {
    let stored: HashMap<&str, &AreaEntry> = county
        .stored
        .iter()
        .map(|area| (area.area_id.as_str(), area))
        .collect();
    let mut plan = AreaImportPlan::default();
    let mut listed: HashSet<&str> = HashSet::new();
    for area in &validated.areas {
        listed.insert(area.area_id.as_str());
        let Some(before) = stored.get(area.area_id.as_str()) else {
            plan.new_areas.push(AreaEntry {
                area_id: area.area_id.clone(),
                name: area.name.clone(),
                level: area.level,
                parent_id: area.parent_id.clone(),
                centre: area.centre,
                attributes: area.attributes.clone(),
            });
            continue;
        };
        let mut after = (*before).clone();
        let mut change = |field: &str, field_zh: &str, old_value: String, new_value: String| {
            plan.changes.push(AreaChange {
                row_number: area.row_number,
                area_id: area.area_id.clone(),
                area_name: area.name.clone(),
                field: field.to_owned(),
                field_zh: field_zh.to_owned(),
                old_value,
                new_value,
            });
        };
        if before.name != area.name {
            change("name", "名称", before.name.clone(), area.name.clone());
            after.name = area.name.clone();
        }
        if let Some(centre) = area.centre
            && before.centre != Some(centre)
        {
            change(
                "centre",
                "中心点",
                centre_zh(before.centre.as_ref()),
                centre_zh(Some(&centre)),
            );
            after.centre = Some(centre);
        }
        for attribute in Attribute::ALL {
            let Some(value) = attribute.get(&area.attributes) else {
                continue;
            };
            let old = attribute.get(&before.attributes);
            if old != Some(value) {
                change(
                    attribute.key(),
                    attribute.label_zh(),
                    attribute.display_zh(old),
                    attribute.display_zh(Some(value)),
                );
                attribute.set(&mut after.attributes, Some(value));
            }
        }
        if after == **before {
            plan.unchanged_rows += 1;
        } else {
            plan.updated_areas.push(after);
        }
    }
    plan.new_areas
        .sort_by(|left, right| left.area_id.cmp(&right.area_id));
    plan.missing = county
        .stored
        .iter()
        .filter(|area| area.level != AreaLevel::County && !listed.contains(area.area_id.as_str()))
        .map(|area| MissingArea {
            area_id: area.area_id.clone(),
            name: area.name.clone(),
            level: area.level,
        })
        .collect();
    plan.missing
        .sort_by(|left, right| left.area_id.cmp(&right.area_id));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTY: &str = "522731000000";

    fn headers(names: &[&str]) -> AreaColumnMap {
        let headers: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        map_area_headers(&headers).expect("headers")
    }

    fn full_columns() -> AreaColumnMap {
        let names: Vec<&str> = AreaColumn::ALL
            .iter()
            .map(|column| column.header_zh())
            .collect();
        headers(&names)
    }

    /// A row in template order; cells not given are empty.
    fn row(row_number: u32, cells: &[(&str, &str)]) -> SheetRow {
        let mut values = vec![Cell::Empty; AreaColumn::ALL.len()];
        for (header, value) in cells {
            let position = AreaColumn::ALL
                .iter()
                .position(|column| column.header_zh() == *header)
                .unwrap_or_else(|| panic!("unknown header {header}"));
            values[position] = Cell::Text((*value).to_owned());
        }
        SheetRow {
            row_number,
            cells: values,
        }
    }

    fn stored_county() -> CountyAreas {
        CountyAreas {
            county_id: COUNTY.into(),
            stored: vec![AreaEntry {
                area_id: COUNTY.into(),
                name: "示范县".into(),
                level: AreaLevel::County,
                parent_id: None,
                centre: None,
                attributes: VillageAttributes::default(),
            }],
        }
    }

    fn good_rows() -> Vec<SheetRow> {
        vec![
            row(2, &[("统计用区划代码", "522731101000"), ("名称", "城关镇")]),
            row(
                3,
                &[
                    ("统计用区划代码", "522731101201"),
                    ("名称", "新寨村"),
                    ("层级", "村"),
                    ("上级区划代码", "522731101000"),
                    ("中心点纬度", "26.41"),
                    ("中心点经度", "107.47"),
                    ("坐标系", "WGS-84"),
                    ("贫困村", "贫困村"),
                    ("出列年份", "2019"),
                    ("总户数", "412"),
                    ("建档立卡贫困户数", "96"),
                    ("村集体经济收入（万元）", "12.5"),
                    ("通宽带", "是"),
                ],
            ),
            row(4, &[("统计用区划代码", "522731101202"), ("名称", "老寨村")]),
        ]
    }

    fn validate(rows: &[SheetRow], county: &CountyAreas) -> AreasValidated {
        validate_area_rows(rows, &full_columns(), county, &mut |_| {})
    }

    fn kinds(validated: &AreasValidated) -> Vec<(u32, String, IssueKind)> {
        validated
            .issues
            .iter()
            .map(|issue| (issue.row_number, issue.column.clone(), issue.kind))
            .collect()
    }

    #[test]
    fn levels_and_parents_come_from_the_code_structure() {
        let cases: &[(&str, Result<AreaLevel, ()>, Option<&str>)] = &[
            ("522731000000", Ok(AreaLevel::County), None),
            (
                "522731101000",
                Ok(AreaLevel::Township),
                Some("522731000000"),
            ),
            ("522731101201", Ok(AreaLevel::Village), Some("522731101000")),
            ("522731101200", Ok(AreaLevel::Village), Some("522731101000")),
            ("520000000000", Err(()), None),
            ("522700000000", Err(()), None),
            ("52273110120", Err(()), None),
            ("5227311012011", Err(()), None),
            ("52273110120A", Err(()), None),
            ("５２２７３１１０１２０１", Err(()), None),
            ("", Err(()), None),
        ];
        for (code, level, parent) in cases {
            let found = level_of_code(code).map_err(|_| ());
            assert_eq!(&found, level, "{code}");
            if let Ok(level) = found {
                assert_eq!(parent_code(code, level).as_deref(), *parent, "{code}");
            }
        }
    }

    #[test]
    fn a_good_file_becomes_new_areas_with_attributes_and_a_centre() {
        let county = stored_county();
        let validated = validate(&good_rows(), &county);
        assert!(validated.issues.is_empty(), "{:?}", validated.issues);
        assert_eq!(validated.data_rows, 3);
        assert_eq!(validated.crs, Some(Crs::Wgs84));
        let plan = diff_areas(&validated, &county);
        let codes: Vec<&str> = plan
            .new_areas
            .iter()
            .map(|area| area.area_id.as_str())
            .collect();
        assert_eq!(codes, ["522731101000", "522731101201", "522731101202"]);
        let village = &plan.new_areas[1];
        assert_eq!(village.parent_id.as_deref(), Some("522731101000"));
        assert_eq!(village.level, AreaLevel::Village);
        assert_eq!(
            village.centre,
            Some(GeoPoint {
                lat: 26.41,
                lon: 107.47,
                crs: Crs::Wgs84
            })
        );
        assert_eq!(village.attributes.is_poor_village, Some(true));
        assert_eq!(village.attributes.exit_year, Some(2019));
        assert_eq!(village.attributes.poor_households, Some(96));
        assert_eq!(village.attributes.collective_income_yuan, Some(125_000));
        assert_eq!(village.attributes.broadband, Some(true));
        assert_eq!(village.attributes.road_paved, None, "blank stays unknown");
        assert!(plan.missing.is_empty());
    }

    /// A sabotaged row's cells, the column blamed and the kind of issue.
    type SabotageCase = (
        &'static [(&'static str, &'static str)],
        &'static str,
        IssueKind,
    );

    /// Each sabotaged row against a county whose stored townships are 101 and 102.
    #[test]
    fn each_bad_cell_is_reported_with_row_column_and_kind() {
        let mut county = stored_county();
        county.stored.push(AreaEntry {
            area_id: "522731102000".into(),
            name: "河东乡".into(),
            level: AreaLevel::Township,
            parent_id: Some(COUNTY.into()),
            centre: None,
            attributes: VillageAttributes::default(),
        });
        let cases: &[SabotageCase] = &[
            (
                &[("统计用区划代码", "52273110120"), ("名称", "短码村")],
                "统计用区划代码",
                IssueKind::BadCode,
            ),
            (
                &[("统计用区划代码", "522700000000"), ("名称", "州")],
                "统计用区划代码",
                IssueKind::BadCode,
            ),
            (
                &[("统计用区划代码", "522732101201"), ("名称", "邻县村")],
                "统计用区划代码",
                IssueKind::OutsideCounty,
            ),
            (
                &[("统计用区划代码", "522732000000"), ("名称", "邻县")],
                "统计用区划代码",
                IssueKind::OutsideCounty,
            ),
            (
                &[("统计用区划代码", ""), ("名称", "无码村")],
                "统计用区划代码",
                IssueKind::RequiredEmpty,
            ),
            (
                &[("统计用区划代码", "522731102201"), ("名称", "")],
                "名称",
                IssueKind::RequiredEmpty,
            ),
            (
                &[
                    ("统计用区划代码", "522731102202"),
                    ("名称", "错层村"),
                    ("层级", "乡镇"),
                ],
                "层级",
                IssueKind::LevelMismatch,
            ),
            (
                &[
                    ("统计用区划代码", "522731102203"),
                    ("名称", "乱层村"),
                    ("层级", "组"),
                ],
                "层级",
                IssueKind::LevelMismatch,
            ),
            (
                &[
                    ("统计用区划代码", "522731102204"),
                    ("名称", "错上级村"),
                    ("上级区划代码", "522731101000"),
                ],
                "上级区划代码",
                IssueKind::ParentMismatch,
            ),
            (
                &[("统计用区划代码", "522731109201"), ("名称", "孤村")],
                "上级区划代码",
                IssueKind::MissingParent,
            ),
            (
                &[
                    ("统计用区划代码", "522731102205"),
                    ("名称", "坐标村"),
                    ("中心点纬度", "126.4"),
                    ("中心点经度", "107.4"),
                    ("坐标系", "WGS-84"),
                ],
                "中心点纬度",
                IssueKind::BadCoordinate,
            ),
            (
                &[
                    ("统计用区划代码", "522731102206"),
                    ("名称", "半坐标村"),
                    ("中心点纬度", "26.4"),
                    ("坐标系", "WGS-84"),
                ],
                "中心点经度",
                IssueKind::BadCoordinate,
            ),
            (
                &[
                    ("统计用区划代码", "522731102207"),
                    ("名称", "百度村"),
                    ("中心点纬度", "26.4"),
                    ("中心点经度", "107.4"),
                    ("坐标系", "BD-09"),
                ],
                "坐标系",
                IssueKind::BadCrs,
            ),
            (
                &[
                    ("统计用区划代码", "522731102208"),
                    ("名称", "无系村"),
                    ("中心点纬度", "26.4"),
                    ("中心点经度", "107.4"),
                ],
                "坐标系",
                IssueKind::BadCrs,
            ),
            (
                &[
                    ("统计用区划代码", "522731102209"),
                    ("名称", "年份村"),
                    ("出列年份", "二〇一九"),
                ],
                "出列年份",
                IssueKind::BadAttribute,
            ),
            (
                &[
                    ("统计用区划代码", "522731102210"),
                    ("名称", "户数村"),
                    ("总户数", "10"),
                    ("建档立卡贫困户数", "11"),
                ],
                "建档立卡贫困户数",
                IssueKind::BadAttribute,
            ),
            (
                &[
                    ("统计用区划代码", "522731102211"),
                    ("名称", "负户村"),
                    ("总户数", "-3"),
                ],
                "总户数",
                IssueKind::BadAttribute,
            ),
            (
                &[
                    ("统计用区划代码", "522731103000"),
                    ("名称", "属性乡"),
                    ("贫困村", "是"),
                ],
                "贫困村",
                IssueKind::AttributeNotForLevel,
            ),
            (
                &[
                    ("统计用区划代码", "522731102212"),
                    ("名称", "河东乡"),
                    ("通宽带", "也许"),
                ],
                "通宽带",
                IssueKind::BadAttribute,
            ),
        ];
        for (cells, column, kind) in cases {
            let validated = validate(&[row(7, cells)], &county);
            assert!(
                validated.issues.iter().any(|issue| issue.row_number == 7
                    && issue.column == *column
                    && issue.kind == *kind
                    && !issue.reason.is_empty()
                    && issue.reason_en.starts_with("row 7, ")),
                "{cells:?}: expected {column} {kind:?}, got {:?}",
                validated.issues
            );
            assert!(validated.areas.is_empty(), "{cells:?} must not pass");
        }
    }

    #[test]
    fn duplicates_names_and_crs_are_checked_across_rows() {
        let county = stored_county();
        let mut rows = good_rows();
        rows.push(row(
            5,
            &[("统计用区划代码", "522731101201"), ("名称", "重复村")],
        ));
        rows.push(row(
            6,
            &[("统计用区划代码", "522731101203"), ("名称", "老寨村")],
        ));
        rows.push(row(
            7,
            &[
                ("统计用区划代码", "522731101204"),
                ("名称", "火星村"),
                ("中心点纬度", "26.4"),
                ("中心点经度", "107.4"),
                ("坐标系", "GCJ-02"),
            ],
        ));
        let validated = validate(&rows, &county);
        assert_eq!(
            kinds(&validated),
            vec![
                (5, "统计用区划代码".into(), IssueKind::DuplicateCode),
                (6, "名称".into(), IssueKind::DuplicateName),
                (7, "坐标系".into(), IssueKind::BadCrs),
            ]
        );
        assert!(validated.issues[0].reason.contains("第3行"));
        assert_eq!(validated.bad_row_count(), 3);
        assert_eq!(validated.areas.len(), 3, "the good rows still pass");
    }

    #[test]
    fn a_point_outside_china_is_a_warning_not_an_error() {
        let county = stored_county();
        let mut rows = good_rows();
        rows[1] = row(
            3,
            &[
                ("统计用区划代码", "522731101201"),
                ("名称", "新寨村"),
                ("中心点纬度", "107.47"),
                ("中心点经度", "26.41"),
                ("坐标系", "WGS-84"),
            ],
        );
        // Swapped halves are impossible (latitude > 90); a point in Africa is possible.
        let validated = validate(&rows, &county);
        assert_eq!(validated.issues[0].kind, IssueKind::BadCoordinate);
        rows[1] = row(
            3,
            &[
                ("统计用区划代码", "522731101201"),
                ("名称", "新寨村"),
                ("中心点纬度", "-1.29"),
                ("中心点经度", "36.82"),
                ("坐标系", "WGS-84"),
            ],
        );
        let validated = validate(&rows, &county);
        assert!(validated.issues.is_empty(), "{:?}", validated.issues);
        assert_eq!(validated.warnings.len(), 1);
        assert_eq!(validated.warnings[0].kind, IssueKind::OutsideChina);
        assert_eq!(validated.areas.len(), 3);
    }

    #[test]
    fn reimport_changes_nothing_and_renames_and_missing_villages_are_reported() {
        let mut county = stored_county();
        let first = diff_areas(&validate(&good_rows(), &county), &county);
        county.stored.extend(first.new_areas.clone());

        let again = diff_areas(&validate(&good_rows(), &county), &county);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.unchanged_rows, 3);
        assert!(again.missing.is_empty());

        // Rename 新寨村, drop 老寨村, blank the attributes (which keeps them).
        let rows = vec![
            good_rows()[0].clone(),
            row(
                3,
                &[("统计用区划代码", "522731101201"), ("名称", "新寨社区")],
            ),
        ];
        let validated = validate(&rows, &county);
        assert!(validated.issues.is_empty(), "{:?}", validated.issues);
        let plan = diff_areas(&validated, &county);
        assert_eq!(plan.renamed_count(), 1);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].old_value, "新寨村");
        assert_eq!(plan.changes[0].new_value, "新寨社区");
        assert_eq!(plan.updated_areas.len(), 1);
        assert_eq!(
            plan.updated_areas[0].attributes.exit_year,
            Some(2019),
            "a blank cell never erases"
        );
        assert_eq!(
            plan.missing,
            vec![MissingArea {
                area_id: "522731101202".into(),
                name: "老寨村".into(),
                level: AreaLevel::Village,
            }]
        );
    }

    #[test]
    fn a_changed_attribute_is_one_change_with_words() {
        let mut county = stored_county();
        let first = diff_areas(&validate(&good_rows(), &county), &county);
        county.stored.extend(first.new_areas);
        let mut rows = good_rows();
        rows[1] = row(
            3,
            &[
                ("统计用区划代码", "522731101201"),
                ("名称", "新寨村"),
                ("贫困村", "非贫困村"),
            ],
        );
        let plan = diff_areas(&validate(&rows, &county), &county);
        assert_eq!(plan.changes.len(), 1);
        let change = &plan.changes[0];
        assert_eq!(
            (
                change.field.as_str(),
                change.old_value.as_str(),
                change.new_value.as_str()
            ),
            ("is_poor_village", "贫困村", "非贫困村")
        );
    }

    #[test]
    fn headers_match_aliases_and_only_code_and_name_are_required() {
        let columns = headers(&["区划代码", "区划名称", "纬度", "经度", "村集体收入(万元)"]);
        assert!(columns.has(AreaColumn::Code) && columns.has(AreaColumn::Latitude));
        assert!(columns.has(AreaColumn::Attribute(Attribute::CollectiveIncome)));
        assert_eq!(
            map_area_headers(&["名称".to_owned()]),
            Err(HeaderError::MissingColumns(vec!["统计用区划代码".into()]))
        );
        assert_eq!(
            map_area_headers(&["代码".into(), "名称".into(), "区划代码".into()]),
            Err(HeaderError::DuplicateColumn("统计用区划代码".into()))
        );
    }

    #[test]
    fn every_template_column_has_a_unique_header_and_a_note() {
        let mut seen = HashSet::new();
        for column in AreaColumn::ALL {
            assert!(
                seen.insert(normalise_header(column.header_zh())),
                "{column:?}"
            );
            assert!(!column.note_zh().is_empty());
        }
        for attribute in Attribute::ALL {
            let mut attributes = VillageAttributes::default();
            attribute.set(&mut attributes, Some(1));
            assert_eq!(attribute.get(&attributes), Some(1), "{attribute:?}");
        }
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Whatever the cells hold, validation answers with issues, never a panic, and every
        /// row either passes or has an error.
        #[test]
        fn any_cells_are_validated_without_panicking(
            cells in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        proptest::string::string_regex("52273[0-9]{7}").expect("regex"),
                        proptest::string::string_regex(".{0,14}").expect("regex"),
                        proptest::num::f64::ANY.prop_map(|number| number.to_string()),
                    ],
                    AreaColumn::ALL.len(),
                ),
                1..12,
            )
        ) {
            let rows: Vec<SheetRow> = cells
                .into_iter()
                .enumerate()
                .map(|(index, row)| SheetRow {
                    row_number: index as u32 + 2,
                    cells: row.into_iter().map(Cell::Text).collect(),
                })
                .collect();
            let county = stored_county();
            let validated = validate(&rows, &county);
            let bad: HashSet<u32> = validated.issues.iter().map(|issue| issue.row_number).collect();
            for area in &validated.areas {
                proptest::prop_assert!(!bad.contains(&area.row_number));
            }
            let _ = diff_areas(&validated, &county);
        }
    }

    #[test]
    fn a_code_typed_as_a_long_number_is_refused_with_advice() {
        let county = stored_county();
        let mut bad = row(2, &[("名称", "城关镇")]);
        bad.cells[0] = Cell::Number(5.227_311_01e11);
        let validated = validate(&[bad], &county);
        // 522731101000 survives as an integer-valued float, so it is accepted.
        assert!(validated.issues.is_empty(), "{:?}", validated.issues);
        let mut bad = row(2, &[("名称", "城关镇")]);
        bad.cells[0] = Cell::Number(5.227_311_012_01e15);
        let validated = validate(&[bad], &county);
        assert_eq!(validated.issues[0].kind, IssueKind::BadCode);
    }
}
