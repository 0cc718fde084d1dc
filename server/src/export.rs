//! Ledger exports (台账导出, issue 5 item 8): the 走访台账 (visits of a month), the 收入登记台账
//! (income registrations of a quarter or year), the 核验提示清单 (evidence flags of a month)
//! and 入户率 by village and by cadre, each as XLSX (for printing and filing) and CSV (UTF-8
//! with a byte-order mark, so Excel opens the Chinese correctly).
//!
//! Scope comes from the principal: a township supervisor exports the township, the county
//! admin and the auditor the county. ID numbers and phones are masked by
//! [`fieldsync_model::access`]; only the county admin may ask for full values (`full=1`),
//! and that export is an audited action: the audit record (who, when, what, filter, row
//! count, the file's SHA-256, chained to the previous record) is written before the file is
//! returned, and a failed audit write fails the export.
//!
//! Rows are read from the store in pages ([`EXPORT_PAGE`]) and written to the sheet as they
//! arrive, so the database side never holds more than a page. The XLSX sheet is written in
//! rust_xlsxwriter's constant-memory mode: rows spill to a temporary file in row order (title,
//! header, data, totals), and only the finished, compressed file is held in memory.
//!
//! Rows come sorted by village (统计用区划代码 order), household, and then visit time.
//!
//! XLSX layout: a title row with the area and period, the Chinese header row frozen and
//! repeated on every printed page, column widths that fit the content, `#,##0.00` for yuan,
//! real date and time cells (Beijing time) formatted `yyyy-mm-dd`, `hh:mm` and
//! `yyyy-mm-dd hh:mm`, so officials can sort and filter by them,
//! landscape A4 fitted to the page width, page numbers in the footer. CSV: one header row,
//! then the data rows (no title or totals row, so it stays machine-readable).

use fieldsync_model::CodeList;
use fieldsync_model::access::{
    ACTION_FULL_EXPORT, AuditContent, SensitiveField, check_full_request, disclose, disclosure,
};
use fieldsync_model::codes::{Role, VisitMode};
use fieldsync_model::income::INCOME_YEARS;
use fieldsync_model::ledger::BusinessMonth;
use fieldsync_model::time_util::{BEIJING, beijing_minutes, business_month};
use rust_xlsxwriter::{Format, FormatAlign, FormatBorder, Workbook, Worksheet};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{ExportCursor, ExportHousehold, Principal};

/// Rows read from the store per page.
pub const EXPORT_PAGE: u32 = 500;

/// Which ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// 走访台账.
    Visits,
    /// 收入登记台账.
    Income,
    /// 核验提示清单.
    Flags,
    /// 入户率 by village and by cadre.
    Coverage,
}

impl ExportKind {
    pub const ALL: [ExportKind; 4] = [Self::Visits, Self::Income, Self::Flags, Self::Coverage];

    /// The name in the URL (`/console/exports/{name}.xlsx`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visits => "visits",
            Self::Income => "income",
            Self::Flags => "flags",
            Self::Coverage => "coverage",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Visits => "走访台账",
            Self::Income => "收入登记台账",
            Self::Flags => "核验提示清单",
            Self::Coverage => "入户率统计",
        }
    }

    /// Whether the ledger is per month (else per year or quarter).
    pub fn is_monthly(self) -> bool {
        !matches!(self, Self::Income)
    }
}

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Xlsx,
    Csv,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Xlsx => "xlsx",
            Self::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// The period an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportPeriod {
    Month(BusinessMonth),
    /// A whole year (`quarter: None`) or one quarter.
    Year {
        year: i32,
        quarter: Option<u32>,
    },
}

impl ExportPeriod {
    /// "2026年3月", "2026年第1季度", "2026年".
    pub fn label_zh(&self) -> String {
        match self {
            Self::Month(month) => month.label_zh(),
            Self::Year {
                year,
                quarter: Some(quarter),
            } => format!("{year}年第{quarter}季度"),
            Self::Year {
                year,
                quarter: None,
            } => format!("{year}年"),
        }
    }

    /// Canonical filter text for the audit log and file names.
    pub fn filter_text(&self) -> String {
        match self {
            Self::Month(month) => format!("month={month}"),
            Self::Year {
                year,
                quarter: Some(quarter),
            } => format!("year={year}&quarter={quarter}"),
            Self::Year {
                year,
                quarter: None,
            } => format!("year={year}"),
        }
    }

    fn file_part(&self) -> String {
        match self {
            Self::Month(month) => month.to_string(),
            Self::Year {
                year,
                quarter: Some(quarter),
            } => format!("{year}-Q{quarter}"),
            Self::Year {
                year,
                quarter: None,
            } => year.to_string(),
        }
    }
}

/// A validated export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub kind: ExportKind,
    pub format: ExportFormat,
    pub period: ExportPeriod,
    /// The county admin's request for full ID numbers and phones (audited).
    pub full: bool,
}

/// The raw query parameters, as text, so that every bad value gets a typed error naming it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ExportQuery {
    pub month: Option<String>,
    pub year: Option<String>,
    pub quarter: Option<String>,
    pub full: Option<String>,
}

/// Parse `{kind}.{xlsx|csv}` and the query. Missing periods default to the current Beijing
/// month or year at `now`. An unknown kind or format is `NotFound`; a bad period or `full`
/// value is `InvalidArgument` naming the parameter.
pub fn parse_request(
    file: &str,
    query: &ExportQuery,
    now: OffsetDateTime,
) -> Result<ExportRequest, ServiceError> {
    let unknown = || ServiceError::NotFound(format!("没有名为 {file:?} 的导出 (unknown export)"));
    let (name, extension) = file.rsplit_once('.').ok_or_else(unknown)?;
    let kind = ExportKind::parse(name).ok_or_else(unknown)?;
    let format = match extension {
        "xlsx" => ExportFormat::Xlsx,
        "csv" => ExportFormat::Csv,
        _ => return Err(unknown()),
    };
    let present = |value: &Option<String>| crate::text::non_empty(value.as_deref());
    let period = if kind.is_monthly() {
        let month = present(&query.month).unwrap_or_else(|| business_month(now));
        ExportPeriod::Month(
            BusinessMonth::parse(&month)
                .map_err(|error| ServiceError::invalid("month", error.to_string()))?,
        )
    } else {
        let current_year = now.to_offset(BEIJING).year();
        let year = match present(&query.year) {
            None => current_year,
            Some(text) => text
                .parse::<i32>()
                .ok()
                .filter(|year| INCOME_YEARS.contains(year))
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "year",
                        format!(
                            "年份应在{}到{}之间，例如 2026: {text:?}",
                            INCOME_YEARS.start(),
                            INCOME_YEARS.end()
                        ),
                    )
                })?,
        };
        let quarter = match present(&query.quarter) {
            None => None,
            Some(text) => Some(
                text.parse::<u32>()
                    .ok()
                    .filter(|quarter| (1..=4).contains(quarter))
                    .ok_or_else(|| {
                        ServiceError::invalid("quarter", format!("季度应为 1 到 4: {text:?}"))
                    })?,
            ),
        };
        ExportPeriod::Year { year, quarter }
    };
    let full = match present(&query.full).as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(ServiceError::invalid(
                "full",
                format!("full 只能是 0 或 1: {other:?}"),
            ));
        }
    };
    Ok(ExportRequest {
        kind,
        format,
        period,
        full,
    })
}

/// A finished export file.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// Chinese file name for `Content-Disposition` (`filename*`).
    pub file_name: String,
    /// ASCII fallback file name.
    pub ascii_file_name: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    /// Data rows (no title, header or totals rows).
    pub row_count: u64,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// Build an export for the principal, auditing it first when it carries full values.
pub async fn export(
    app: &AppState,
    principal: &Principal,
    request: &ExportRequest,
) -> Result<ExportFile, ServiceError> {
    if request.full {
        check_full_request(principal.role)
            .map_err(|denied| ServiceError::PermissionDenied(denied.to_string()))?;
    }
    let area = app
        .store
        .get_area(&principal.area_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("area {} not found", principal.area_id)))?;
    let masking = Masking::for_request(principal.role, request.full);
    let title = format!(
        "{}{}（{}）",
        area.name,
        request.kind.label_zh(),
        request.period.label_zh()
    );
    let now = app.clock.now();
    let mut sheet = Sheet::new(request.format, &title, columns(request.kind), now, masking)?;
    match (request.kind, request.period) {
        (ExportKind::Visits, ExportPeriod::Month(month)) => {
            write_visits(app, &area.area_id, month, &masking, &mut sheet).await?
        }
        (ExportKind::Flags, ExportPeriod::Month(month)) => {
            write_flags(app, &area.area_id, month, &mut sheet).await?
        }
        (ExportKind::Income, ExportPeriod::Year { year, quarter }) => {
            write_income(app, &area.area_id, year, quarter, &masking, &mut sheet).await?
        }
        (ExportKind::Coverage, ExportPeriod::Month(month)) => {
            write_coverage(app, principal, month, &mut sheet).await?
        }
        _ => {
            return Err(ServiceError::invalid(
                "period",
                "该台账不支持此统计期 (period does not fit this ledger)",
            ));
        }
    }
    let row_count = sheet.row_count;
    let bytes = tokio::task::spawn_blocking(move || sheet.finish())
        .await
        .map_err(|error| {
            tracing::error!(%error, "export task failed");
            ServiceError::Internal
        })??;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let ascii_file_name = format!(
        "fieldsync-{}-{}.{}",
        request.kind.as_str(),
        request.period.file_part(),
        request.format.extension()
    );
    let file_name = format!(
        "{}-{}-{}{}.{}",
        area.name,
        request.kind.label_zh(),
        request.period.file_part(),
        if request.full { "-完整" } else { "" },
        request.format.extension()
    );
    if request.full {
        // Written before the file leaves the server; if it cannot be written, the caller
        // gets an error instead of an unaudited file.
        app.store
            .append_audit(AuditContent {
                recorded_at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX),
                actor_user_id: principal.user_id.clone(),
                actor_role: principal.role.as_str().to_owned(),
                area_id: principal.area_id.clone(),
                action: ACTION_FULL_EXPORT.to_owned(),
                subject: format!("{}.{}", request.kind.as_str(), request.format.extension()),
                filter: request.period.filter_text(),
                row_count,
                file_sha256: sha256.clone(),
                detail: format!("导出完整身份证号和电话：{title}"),
            })
            .await?;
    }
    Ok(ExportFile {
        file_name,
        ascii_file_name,
        content_type: request.format.content_type(),
        bytes,
        row_count,
        sha256,
    })
}

// ----- masking -----

/// How the sensitive columns of one export are disclosed.
#[derive(Debug, Clone, Copy)]
struct Masking {
    role: Role,
    full: bool,
}

impl Masking {
    fn for_request(role: Role, full: bool) -> Self {
        Self { role, full }
    }

    fn apply(&self, field: SensitiveField, value: &str) -> String {
        disclose(field, disclosure(self.role, field, self.full), value).unwrap_or_default()
    }

    fn is_full(&self) -> bool {
        self.full && fieldsync_model::access::may_request_full(self.role)
    }
}

// ----- columns and cells -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Text,
    Integer,
    /// Fen, shown as yuan with 2 decimals.
    Money,
    /// A calendar date (Beijing), `yyyy-mm-dd`.
    Date,
    /// A time of day (Beijing), `hh:mm`.
    Time,
    /// A date and time (Beijing), `yyyy-mm-dd hh:mm`.
    DateTime,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    header: &'static str,
    /// Width in Excel character units (a CJK character is about 2).
    width: f64,
    kind: ColumnKind,
}

const fn text(header: &'static str, width: f64) -> Column {
    Column {
        header,
        width,
        kind: ColumnKind::Text,
    }
}

const fn integer(header: &'static str, width: f64) -> Column {
    Column {
        header,
        width,
        kind: ColumnKind::Integer,
    }
}

const fn money(header: &'static str, width: f64) -> Column {
    Column {
        header,
        width,
        kind: ColumnKind::Money,
    }
}

const fn dated(header: &'static str, width: f64, kind: ColumnKind) -> Column {
    Column {
        header,
        width,
        kind,
    }
}

/// Characters of 生产生活情况 the 走访内容 column keeps: enough to read what was seen, short
/// enough for a printed row.
const VISIT_CONTENT_CHARS: usize = 60;

const VISIT_COLUMNS: &[Column] = &[
    text("乡镇", 10.0),
    text("村", 12.0),
    text("户编号", 20.0),
    text("户主", 10.0),
    text("户主身份证号", 21.0),
    text("联系电话", 14.0),
    text("帮扶干部", 10.0),
    text("干部电话", 14.0),
    dated("走访日期", 11.0, ColumnKind::Date),
    dated("签到时间", 9.0, ColumnKind::Time),
    text("走访方式", 10.0),
    text("是否入户", 9.0),
    text("走访内容", 40.0),
    text("审核状态", 9.0),
    text("审核人", 10.0),
    dated("审核时间", 17.0, ColumnKind::DateTime),
    text("核验提示", 36.0),
    integer("照片数", 7.0),
];

const INCOME_COLUMNS: &[Column] = &[
    text("乡镇", 10.0),
    text("村", 12.0),
    text("户编号", 20.0),
    text("户主", 10.0),
    text("户主身份证号", 21.0),
    integer("年度", 7.0),
    integer("季度", 6.0),
    integer("家庭人口", 9.0),
    money("工资性收入(元)", 14.0),
    money("生产经营性收入(元)", 16.0),
    money("财产性收入(元)", 14.0),
    money("转移性收入(元)", 14.0),
    money("生产经营性支出(元)", 16.0),
    money("家庭纯收入(元)", 14.0),
    money("人均纯收入(元)", 14.0),
];

const FLAG_COLUMNS: &[Column] = &[
    text("乡镇", 10.0),
    text("村", 12.0),
    text("户编号", 20.0),
    text("户主", 10.0),
    text("帮扶干部", 10.0),
    dated("走访时间", 17.0, ColumnKind::DateTime),
    text("提示代码", 22.0),
    text("核验提示", 20.0),
    text("详情", 48.0),
    text("走访编号", 38.0),
];

const COVERAGE_COLUMNS: &[Column] = &[
    text("统计口径", 10.0),
    text("名称", 16.0),
    integer("应走访户数", 11.0),
    integer("已入户户数", 11.0),
    integer("审核通过入户户数", 16.0),
    integer("逾期户数", 9.0),
];

fn columns(kind: ExportKind) -> &'static [Column] {
    match kind {
        ExportKind::Visits => VISIT_COLUMNS,
        ExportKind::Income => INCOME_COLUMNS,
        ExportKind::Flags => FLAG_COLUMNS,
        ExportKind::Coverage => COVERAGE_COLUMNS,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    Integer(i64),
    Money(i64),
    /// A Beijing calendar date.
    Date(time::Date),
    /// A Beijing time of day.
    Time(time::Time),
    /// A Beijing date and time.
    DateTime(time::PrimitiveDateTime),
    Empty,
}

/// An instant as Beijing wall-clock time, the time officials read.
fn beijing(instant: OffsetDateTime) -> time::PrimitiveDateTime {
    let local = instant.to_offset(BEIJING);
    time::PrimitiveDateTime::new(local.date(), local.time())
}

/// The first [`VISIT_CONTENT_CHARS`] characters of a text on one line, with "…" when cut.
fn short_content(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = one_line.chars();
    let kept: String = chars.by_ref().take(VISIT_CONTENT_CHARS).collect();
    if chars.next().is_some() {
        format!("{kept}…")
    } else {
        kept
    }
}

/// Whole minutes: the ledgers show times to the minute, so seconds never make two equal
/// times look different.
fn to_minute(time: time::Time) -> time::Time {
    time::Time::from_hms(time.hour(), time.minute(), 0).unwrap_or(time)
}

fn excel_date(date: time::Date) -> Result<rust_xlsxwriter::ExcelDateTime, ServiceError> {
    let year = u16::try_from(date.year()).map_err(|_| ServiceError::Internal)?;
    rust_xlsxwriter::ExcelDateTime::from_ymd(year, u8::from(date.month()), date.day())
        .map_err(xlsx_error)
}

fn cell_text(value: impl Into<String>) -> Cell {
    Cell::Text(value.into())
}

/// Characters that make a spreadsheet read a CSV cell as a formula (or, for tab and CR,
/// let a cell start one after trimming): OWASP "CSV Injection".
const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell as it goes into CSV: one that would start a formula gets a leading `'`, so
/// Excel and WPS show it as text (`=HYPERLINK(...)` typed on a phone stays a string).
///
/// Only text cells are neutralised. Counts and money are [`Cell::Integer`] /
/// [`Cell::Money`], written by the server from integers, never from phone text; a negative
/// income (`-120.50`) must stay a number that officials can sum, and prefixing it would turn
/// it into text. The CSV writer also quotes every text cell (`QuoteStyle::NonNumeric`), as
/// OWASP recommends, so a separator inside a value can never start a new cell.
fn csv_safe_text(text: &str) -> String {
    if text.starts_with(FORMULA_TRIGGERS) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// "1234.56" for CSV (no grouping, so every tool parses it).
fn yuan_text(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

fn household_cells(household: &ExportHousehold) -> [Cell; 4] {
    [
        cell_text(&household.township_name),
        cell_text(&household.village_name),
        cell_text(&household.national_household_number),
        cell_text(&household.head_name),
    ]
}

// ----- writing -----

async fn write_visits(
    app: &AppState,
    area_id: &str,
    month: BusinessMonth,
    masking: &Masking,
    sheet: &mut Sheet,
) -> Result<(), ServiceError> {
    let month = month.to_string();
    let mut after: Option<ExportCursor> = None;
    loop {
        let page = app
            .store
            .export_visits(area_id, &month, after.clone(), EXPORT_PAGE)
            .await?;
        for row in &page {
            let flags = row
                .flags
                .as_deref()
                .map(|flags| {
                    flags
                        .iter()
                        .map(|flag| flag.label_zh())
                        .collect::<Vec<_>>()
                        .join("；")
                })
                .unwrap_or_default();
            let [township, village, number, head] = household_cells(&row.household);
            let checkin = beijing(row.visit.checkin_at);
            sheet.row(&[
                township,
                village,
                number,
                head,
                cell_text(masking.apply(SensitiveField::IdNumber, &row.household.head_id_number)),
                cell_text(masking.apply(SensitiveField::Phone, &row.household.phone)),
                cell_text(&row.cadre_name),
                cell_text(masking.apply(SensitiveField::Phone, &row.cadre_phone)),
                Cell::Date(checkin.date()),
                Cell::Time(to_minute(checkin.time())),
                cell_text(row.visit.mode.label_zh()),
                cell_text(if row.visit.mode == VisitMode::InPerson {
                    "是"
                } else {
                    "否"
                }),
                cell_text(short_content(&row.visit.observed_situation)),
                cell_text(row.state.label_zh()),
                row.decision
                    .as_ref()
                    .map_or(Cell::Empty, |(reviewer, _)| cell_text(reviewer)),
                row.decision
                    .as_ref()
                    .map_or(Cell::Empty, |(_, decided_at)| {
                        let local = beijing(*decided_at);
                        Cell::DateTime(local.replace_time(to_minute(local.time())))
                    }),
                cell_text(flags),
                Cell::Integer(i64::from(row.photo_count)),
            ])?;
        }
        match page.last() {
            Some(last) if page.len() == EXPORT_PAGE as usize => after = Some(last.cursor()),
            _ => return Ok(()),
        }
    }
}

async fn write_flags(
    app: &AppState,
    area_id: &str,
    month: BusinessMonth,
    sheet: &mut Sheet,
) -> Result<(), ServiceError> {
    let month = month.to_string();
    let mut after: Option<ExportCursor> = None;
    loop {
        let page = app
            .store
            .export_visits(area_id, &month, after.clone(), EXPORT_PAGE)
            .await?;
        for row in &page {
            for flag in row.flags.as_deref().unwrap_or_default() {
                let [township, village, number, head] = household_cells(&row.household);
                sheet.row(&[
                    township,
                    village,
                    number,
                    head,
                    cell_text(&row.cadre_name),
                    {
                        let checkin = beijing(row.visit.checkin_at);
                        Cell::DateTime(checkin.replace_time(to_minute(checkin.time())))
                    },
                    cell_text(flag.code()),
                    cell_text(flag.label_zh()),
                    cell_text(flag.detail()),
                    cell_text(&row.visit.visit_id),
                ])?;
            }
        }
        match page.last() {
            Some(last) if page.len() == EXPORT_PAGE as usize => after = Some(last.cursor()),
            _ => return Ok(()),
        }
    }
}

async fn write_income(
    app: &AppState,
    area_id: &str,
    year: i32,
    quarter: Option<u32>,
    masking: &Masking,
    sheet: &mut Sheet,
) -> Result<(), ServiceError> {
    let mut after: Option<ExportCursor> = None;
    let mut totals = [0_i64; 6];
    loop {
        let page = app
            .store
            .export_income(area_id, year, quarter, after.clone(), EXPORT_PAGE)
            .await?;
        for row in &page {
            let registration = &row.registration;
            let components = &registration.components;
            let amounts = [
                components.wage_fen,
                components.business_gross_fen,
                components.property_fen,
                components.transfer_fen,
                components.business_cost_fen,
                registration.net_fen,
            ];
            for (total, amount) in totals.iter_mut().zip(amounts) {
                *total = total.saturating_add(amount);
            }
            let [township, village, number, head] = household_cells(&row.household);
            let mut cells = vec![
                township,
                village,
                number,
                head,
                cell_text(masking.apply(SensitiveField::IdNumber, &row.household.head_id_number)),
                Cell::Integer(i64::from(registration.year)),
                Cell::Integer(i64::from(registration.quarter)),
                Cell::Integer(i64::from(registration.household_size)),
            ];
            cells.extend(amounts.into_iter().map(Cell::Money));
            cells.push(Cell::Money(registration.per_capita_net_fen));
            sheet.row(&cells)?;
        }
        match page.last() {
            Some(last) if page.len() == EXPORT_PAGE as usize => after = Some(last.cursor()),
            _ => break,
        }
    }
    // 合计: sums of the amount columns; a sum of per-capita figures means nothing, so that
    // cell stays empty.
    let mut cells = vec![cell_text("合计")];
    cells.extend(std::iter::repeat_n(Cell::Empty, 7));
    cells.extend(totals.into_iter().map(Cell::Money));
    cells.push(Cell::Empty);
    sheet.totals(&cells)
}

/// 入户率 by village, then by cadre, from the monthly ledger (`crate::ledger::coverage`),
/// with a 合计 row over the villages (every household is in exactly one village; the cadre
/// section groups the same households by 第一帮扶责任人, so adding both would count twice).
async fn write_coverage(
    app: &AppState,
    principal: &Principal,
    month: BusinessMonth,
    sheet: &mut Sheet,
) -> Result<(), ServiceError> {
    let coverage = crate::ledger::coverage(app, principal, &month.to_string()).await?;
    let mut totals = [0_i64; 4];
    let counts = |row: &crate::ledger::CoverageRow| {
        [
            i64::from(row.due),
            i64::from(row.visited_in_person),
            i64::from(row.approved_in_person),
            i64::from(row.overdue),
        ]
    };
    for row in &coverage.by_village {
        let values = counts(row);
        for (total, value) in totals.iter_mut().zip(values) {
            *total += value;
        }
        let mut cells = vec![cell_text("按村"), cell_text(&row.group_name)];
        cells.extend(values.into_iter().map(Cell::Integer));
        sheet.row(&cells)?;
    }
    for row in &coverage.by_cadre {
        let mut cells = vec![cell_text("按帮扶干部"), cell_text(&row.group_name)];
        cells.extend(counts(row).into_iter().map(Cell::Integer));
        sheet.row(&cells)?;
    }
    let mut cells = vec![cell_text("合计（按村）"), Cell::Empty];
    cells.extend(totals.into_iter().map(Cell::Integer));
    sheet.totals(&cells)
}

/// One export sheet being written, in either format.
struct Sheet {
    columns: &'static [Column],
    row_count: u64,
    target: SheetTarget,
}

enum SheetTarget {
    /// The workbook owns its one worksheet (constant-memory worksheets must be created by
    /// the workbook); it is sheet 0.
    Xlsx {
        workbook: Box<Workbook>,
        next_row: u32,
        formats: Box<XlsxFormats>,
    },
    Csv(Box<csv::Writer<Vec<u8>>>),
}

struct XlsxFormats {
    text: Format,
    integer: Format,
    money: Format,
    date: Format,
    time: Format,
    date_time: Format,
    total_text: Format,
    total_money: Format,
}

fn xlsx_error(error: rust_xlsxwriter::XlsxError) -> ServiceError {
    tracing::error!(%error, "cannot write XLSX export");
    ServiceError::Internal
}

fn csv_error(error: impl std::fmt::Display) -> ServiceError {
    tracing::error!(%error, "cannot write CSV export");
    ServiceError::Internal
}

/// Rows of the title and the header in the XLSX sheet.
const TITLE_ROW: u32 = 0;
const HEADER_ROW: u32 = 1;

impl Sheet {
    fn new(
        format: ExportFormat,
        title: &str,
        columns: &'static [Column],
        now: OffsetDateTime,
        masking: Masking,
    ) -> Result<Self, ServiceError> {
        let target = match format {
            ExportFormat::Csv => {
                let mut buffer = Vec::with_capacity(64 * 1024);
                // UTF-8 byte-order mark: without it Excel reads the file as the local code
                // page and the Chinese turns into mojibake.
                buffer.extend_from_slice("\u{feff}".as_bytes());
                let mut writer = csv::WriterBuilder::new()
                    .quote_style(csv::QuoteStyle::NonNumeric)
                    .from_writer(buffer);
                writer
                    .write_record(columns.iter().map(|column| column.header))
                    .map_err(csv_error)?;
                SheetTarget::Csv(Box::new(writer))
            }
            ExportFormat::Xlsx => {
                let mut workbook = Workbook::new();
                let worksheet = workbook
                    .add_worksheet_with_constant_memory()
                    .map_err(xlsx_error)?;
                let formats = set_up_worksheet(worksheet, title, columns, now, masking)?;
                SheetTarget::Xlsx {
                    workbook: Box::new(workbook),
                    next_row: HEADER_ROW + 1,
                    formats: Box::new(formats),
                }
            }
        };
        Ok(Self {
            columns,
            row_count: 0,
            target,
        })
    }

    fn row(&mut self, cells: &[Cell]) -> Result<(), ServiceError> {
        self.write(cells, false)?;
        self.row_count += 1;
        Ok(())
    }

    /// A totals row (XLSX only; CSV stays pure data).
    fn totals(&mut self, cells: &[Cell]) -> Result<(), ServiceError> {
        match self.target {
            SheetTarget::Csv(_) => Ok(()),
            SheetTarget::Xlsx { .. } => self.write(cells, true),
        }
    }

    fn write(&mut self, cells: &[Cell], total: bool) -> Result<(), ServiceError> {
        debug_assert_eq!(cells.len(), self.columns.len());
        debug_assert!(
            cells
                .iter()
                .zip(self.columns)
                .all(|(cell, column)| matches!(
                    (cell, column.kind),
                    (Cell::Empty, _)
                        | (Cell::Text(_), ColumnKind::Text)
                        | (Cell::Integer(_), ColumnKind::Integer)
                        | (Cell::Money(_), ColumnKind::Money)
                        | (Cell::Date(_), ColumnKind::Date)
                        | (Cell::Time(_), ColumnKind::Time)
                        | (Cell::DateTime(_), ColumnKind::DateTime)
                )),
            "every cell matches its column's kind"
        );
        match &mut self.target {
            SheetTarget::Csv(writer) => writer
                .write_record(cells.iter().map(|cell| match cell {
                    Cell::Text(text) => csv_safe_text(text),
                    Cell::Integer(value) => value.to_string(),
                    Cell::Money(fen) => yuan_text(*fen),
                    // ISO forms every spreadsheet and script reads as a date or time.
                    Cell::Date(date) => format!(
                        "{:04}-{:02}-{:02}",
                        date.year(),
                        u8::from(date.month()),
                        date.day()
                    ),
                    Cell::Time(time) => format!("{:02}:{:02}", time.hour(), time.minute()),
                    Cell::DateTime(at) => format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}",
                        at.year(),
                        u8::from(at.month()),
                        at.day(),
                        at.hour(),
                        at.minute()
                    ),
                    Cell::Empty => String::new(),
                }))
                .map_err(csv_error),
            SheetTarget::Xlsx {
                workbook,
                next_row,
                formats,
            } => {
                let worksheet = workbook.worksheet_from_index(0).map_err(xlsx_error)?;
                let row = *next_row;
                for (index, cell) in cells.iter().enumerate() {
                    let column = u16::try_from(index).map_err(|_| ServiceError::Internal)?;
                    let text_format = if total {
                        &formats.total_text
                    } else {
                        &formats.text
                    };
                    match cell {
                        // A shared-string/inline string cell: never a formula, whatever it
                        // starts with (only `write_formula` makes formulas), so no `'` here.
                        Cell::Text(text) => {
                            worksheet.write_string_with_format(row, column, text, text_format)
                        }
                        // Integers and yuan are written as numbers, so officials can sum them.
                        #[allow(clippy::cast_precision_loss)]
                        Cell::Integer(value) => worksheet.write_number_with_format(
                            row,
                            column,
                            *value as f64,
                            &formats.integer,
                        ),
                        #[allow(clippy::cast_precision_loss)]
                        Cell::Money(fen) => worksheet.write_number_with_format(
                            row,
                            column,
                            *fen as f64 / 100.0,
                            if total {
                                &formats.total_money
                            } else {
                                &formats.money
                            },
                        ),
                        // Dates and times are Excel serial numbers with a date format, so they
                        // sort, filter and compute as dates.
                        Cell::Date(date) => worksheet.write_datetime_with_format(
                            row,
                            column,
                            excel_date(*date)?,
                            &formats.date,
                        ),
                        Cell::Time(time) => worksheet.write_datetime_with_format(
                            row,
                            column,
                            rust_xlsxwriter::ExcelDateTime::from_hms(
                                u16::from(time.hour()),
                                time.minute(),
                                time.second(),
                            )
                            .map_err(xlsx_error)?,
                            &formats.time,
                        ),
                        Cell::DateTime(at) => worksheet.write_datetime_with_format(
                            row,
                            column,
                            excel_date(at.date())?
                                .and_hms(u16::from(at.hour()), at.minute(), at.second())
                                .map_err(xlsx_error)?,
                            &formats.date_time,
                        ),
                        Cell::Empty => worksheet.write_blank(row, column, text_format),
                    }
                    .map_err(xlsx_error)?;
                }
                *next_row += 1;
                Ok(())
            }
        }
    }

    /// The file's bytes. CPU-bound for large sheets: run it off the async workers.
    fn finish(self) -> Result<Vec<u8>, ServiceError> {
        match self.target {
            SheetTarget::Csv(writer) => writer.into_inner().map_err(csv_error),
            SheetTarget::Xlsx { mut workbook, .. } => workbook.save_to_buffer().map_err(xlsx_error),
        }
    }
}

/// Give the worksheet its title, header row and print setup; returns the cell formats.
fn set_up_worksheet(
    worksheet: &mut Worksheet,
    title: &str,
    columns: &[Column],
    now: OffsetDateTime,
    masking: Masking,
) -> Result<XlsxFormats, ServiceError> {
    let border = |format: Format| format.set_border(FormatBorder::Thin);
    let formats = XlsxFormats {
        text: border(Format::new().set_text_wrap()),
        integer: border(Format::new().set_num_format("0")),
        money: border(Format::new().set_num_format("#,##0.00")),
        date: border(Format::new().set_num_format("yyyy-mm-dd")),
        time: border(Format::new().set_num_format("hh:mm")),
        date_time: border(Format::new().set_num_format("yyyy-mm-dd hh:mm")),
        total_text: border(Format::new().set_bold()),
        total_money: border(Format::new().set_bold().set_num_format("#,##0.00")),
    };
    let title_format = Format::new()
        .set_bold()
        .set_font_size(14)
        .set_align(FormatAlign::Center)
        .set_align(FormatAlign::VerticalCenter);
    let header_format = border(
        Format::new()
            .set_bold()
            .set_text_wrap()
            .set_align(FormatAlign::Center)
            .set_align(FormatAlign::VerticalCenter)
            .set_background_color(rust_xlsxwriter::Color::RGB(0xDD_E6_F0)),
    );
    let last_column = u16::try_from(columns.len().saturating_sub(1)).unwrap_or(0);
    (|| -> Result<(), rust_xlsxwriter::XlsxError> {
        // Sheet names are limited to 31 characters and some punctuation.
        worksheet.set_name("台账")?;
        worksheet.merge_range(TITLE_ROW, 0, TITLE_ROW, last_column, title, &title_format)?;
        worksheet.set_row_height(TITLE_ROW, 28)?;
        for (index, column) in columns.iter().enumerate() {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            worksheet.write_string_with_format(HEADER_ROW, index, column.header, &header_format)?;
            worksheet.set_column_width(index, column.width)?;
        }
        worksheet.set_freeze_panes(HEADER_ROW + 1, 0)?;
        worksheet.set_repeat_rows(HEADER_ROW, HEADER_ROW)?;
        Ok(())
    })()
    .map_err(xlsx_error)?;
    // 9 = A4 in Excel's paper size codes.
    worksheet.set_paper_size(9);
    worksheet.set_landscape();
    worksheet.set_print_fit_to_pages(1, 0);
    worksheet.set_print_center_horizontally(true);
    let note = if masking.is_full() {
        "含完整身份证号和电话（已审计）"
    } else {
        "身份证号和电话已脱敏"
    };
    // '&' starts a code in Excel headers; doubling it prints it literally.
    let escape = |text: &str| text.replace('&', "&&");
    worksheet.set_header(format!(
        "&L{}&R导出时间 {}；{}",
        escape(title),
        beijing_minutes(now),
        note
    ));
    worksheet.set_footer("&C第 &P 页，共 &N 页");
    Ok(formats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-31 17:00 UTC); // 2026-04-01 01:00 Beijing

    fn query(month: Option<&str>, year: Option<&str>, quarter: Option<&str>) -> ExportQuery {
        ExportQuery {
            month: month.map(str::to_owned),
            year: year.map(str::to_owned),
            quarter: quarter.map(str::to_owned),
            full: None,
        }
    }

    #[test]
    fn requests_parse_kind_format_and_period() {
        let request =
            parse_request("visits.xlsx", &query(Some("2026-03"), None, None), NOW).expect("valid");
        assert_eq!(request.kind, ExportKind::Visits);
        assert_eq!(request.format, ExportFormat::Xlsx);
        assert_eq!(request.period.filter_text(), "month=2026-03");
        let default_month =
            parse_request("flags.csv", &query(None, None, None), NOW).expect("default month");
        assert_eq!(
            default_month.period.filter_text(),
            "month=2026-04",
            "the month is Beijing's"
        );
        let income = parse_request("income.xlsx", &query(None, Some("2025"), Some("2")), NOW)
            .expect("quarter");
        assert_eq!(
            income.period,
            ExportPeriod::Year {
                year: 2025,
                quarter: Some(2)
            }
        );
        assert_eq!(income.period.label_zh(), "2025年第2季度");
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        for (file, query, field) in [
            ("visits.xlsx", query(Some("2026-13"), None, None), "month"),
            ("visits.csv", query(Some("March"), None, None), "month"),
            ("income.xlsx", query(None, Some("26"), None), "year"),
            (
                "income.xlsx",
                query(None, Some("2026"), Some("5")),
                "quarter",
            ),
        ] {
            match parse_request(file, &query, NOW) {
                Err(ServiceError::InvalidArgument { field: named, .. }) => {
                    assert_eq!(named, field, "{file}")
                }
                other => panic!("{file}: {other:?}"),
            }
        }
        for file in ["people.xlsx", "visits.pdf", "visits", ""] {
            assert!(
                matches!(
                    parse_request(file, &query(None, None, None), NOW),
                    Err(ServiceError::NotFound(_))
                ),
                "{file}"
            );
        }
        let mut full = query(None, None, None);
        full.full = Some("yes".into());
        assert!(matches!(
            parse_request("visits.xlsx", &full, NOW),
            Err(ServiceError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn yuan_are_written_with_two_decimals() {
        assert_eq!(yuan_text(123_456), "1234.56");
        assert_eq!(yuan_text(5), "0.05");
        assert_eq!(yuan_text(-150), "-1.50");
    }

    #[test]
    fn text_that_would_start_a_formula_is_neutralised_and_numbers_are_not() {
        for (raw, written) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+86 139", "'+86 139"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("张三", "张三"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_safe_text(raw), written, "{raw:?}");
        }
        let mut sheet = Sheet::new(
            ExportFormat::Csv,
            "t",
            INCOME_COLUMNS,
            NOW,
            Masking::for_request(Role::County, false),
        )
        .expect("sheet");
        let mut cells = vec![Cell::Empty; INCOME_COLUMNS.len()];
        let text_at = INCOME_COLUMNS
            .iter()
            .position(|column| column.kind == ColumnKind::Text)
            .expect("a text column");
        let money_at = INCOME_COLUMNS
            .iter()
            .position(|column| column.kind == ColumnKind::Money)
            .expect("a money column");
        cells[text_at] = cell_text("=1+1");
        cells[money_at] = Cell::Money(-12_050);
        sheet.row(&cells).expect("row");
        let bytes = sheet.finish().expect("csv");
        let text = String::from_utf8(bytes).expect("utf-8");
        let row = text.lines().nth(1).expect("data row");
        assert!(row.contains("\"'=1+1\""), "{row}");
        assert!(
            row.contains(",-120.50") || row.starts_with("-120.50"),
            "{row}"
        );
    }
}
