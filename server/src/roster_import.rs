//! Roster import use case (建档立卡花名册导入): read an uploaded XLSX or CSV, validate every
//! row, compare with the stored households (dry run), and on request apply the changes in
//! one store transaction, as a background job whose progress the console shows.
//!
//! Phases of a job: 读取 (rows read) → 校验 (rows validated) → 比对 (diff against the store)
//! → 预览 (ready: counts, bad rows, a sample of changes) → 写入 (applying) → 已导入. Any
//! failure ends the job in 失败 with nothing stored. Jobs live in the store, shared by every
//! replica ([`crate::import_jobs`]); what was applied lives in the store too (`import_runs`,
//! the import's audit).
//!
//! Reading streams the sheet: calamine's cell reader yields one cell at a time, so a
//! 50,000-row file costs the uploaded bytes plus the parsed rows, never a second full grid.
//! CPU work runs in `spawn_blocking`; the async task only sequences the phases.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use calamine::{DataRef, Reader, Xlsx, XlsxError};
use fieldsync_model::access::{Disclosure, disclose_register_value};
use fieldsync_model::household::Household;
use fieldsync_model::roster::{
    self, Cell, Column, ColumnMap, HeaderError, ImportPlan, MAX_DATA_ROWS, RowIssue, SheetRow,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::AppState;
use crate::error::ServiceError;
pub use crate::import_jobs::JobPhase;
use crate::import_jobs::{self, ImportKind, PreviewSummary};
use crate::store::{ImportRun, Principal, RosterImportApply};
use fieldsync_model::register::Stamp;

/// Largest upload accepted (a 50,000-row register is about 5 MiB as XLSX, 8 MiB as CSV).
pub const MAX_IMPORT_BYTES: usize = 30 * 1024 * 1024;

/// Device id stamped on the import's register writes, so conflict records and register
/// histories show the change came from an import.
pub const ROSTER_IMPORT_DEVICE: &str = "roster-import";

/// How many applied imports the import page lists.
const RECENT_RUNS: u32 = 20;

/// How many changes the preview lists (the counts cover all of them).
const SAMPLE_CHANGES: usize = 100;

/// Why an uploaded file cannot be read as a roster. Nothing is stored in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportFileError {
    #[error("文件为空")]
    Empty,
    #[error("文件超过大小上限（{limit_mib} MiB）")]
    TooLarge { limit_mib: usize },
    #[error("不支持 .xls 旧格式：请在 Excel 中另存为 .xlsx 后再上传")]
    LegacyXls,
    #[error("无法识别的文件格式：请上传 XLSX 或 CSV（UTF-8）文件")]
    UnknownFormat,
    #[error("文件是 ZIP 压缩包，但不是 Excel 工作簿（.xlsx）")]
    NotAWorkbook,
    #[error("XLSX 文件已损坏，无法读取（{0}）")]
    CorruptXlsx(String),
    #[error(
        "CSV 文件不是 UTF-8 编码（可能是 GBK）：请在 Excel 中“另存为 → CSV UTF-8（逗号分隔）”后再上传"
    )]
    NotUtf8,
    #[error("CSV 文件第{line}行无法解析（{message}）")]
    BadCsv { line: u64, message: String },
    #[error("文件不是有效的 Excel 工作簿：其中没有工作表")]
    NoSheet,
    #[error("文件中没有表头行")]
    NoHeader,
    #[error("表头不符合模板：{0}")]
    Header(#[from] HeaderError),
    #[error("数据行超过上限（{0}行）：请按乡镇拆分后分批导入")]
    TooManyRows(usize),
}

impl From<ImportFileError> for ServiceError {
    fn from(error: ImportFileError) -> Self {
        ServiceError::invalid("file", error.to_string())
    }
}

/// The two formats the import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Xlsx,
    Csv,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decide the format from the bytes (never from the file name: a PNG renamed `.xlsx` is
/// still a PNG), and refuse what cannot be a roster before any parsing.
pub fn sniff(bytes: &[u8], limit: usize) -> Result<FileFormat, ImportFileError> {
    if bytes.len() > limit {
        return Err(ImportFileError::TooLarge {
            limit_mib: limit / (1024 * 1024),
        });
    }
    let without_bom = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if without_bom.iter().all(u8::is_ascii_whitespace) {
        return Err(ImportFileError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(FileFormat::Xlsx);
    }
    if bytes.starts_with(b"PK\x05\x06") || bytes.starts_with(b"PK\x07\x08") {
        return Err(ImportFileError::NotAWorkbook);
    }
    if bytes.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        return Err(ImportFileError::LegacyXls);
    }
    let head = &bytes[..bytes.len().min(8192)];
    let binary_magic = [
        &b"\x89PNG"[..],
        b"\xFF\xD8\xFF",
        b"%PDF",
        b"GIF8",
        b"\x1F\x8B",
    ];
    if head.contains(&0) || binary_magic.iter().any(|magic| bytes.starts_with(magic)) {
        return Err(ImportFileError::UnknownFormat);
    }
    if std::str::from_utf8(without_bom).is_err() {
        return Err(ImportFileError::NotUtf8);
    }
    Ok(FileFormat::Csv)
}

/// The header of a sheet and its data rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSheet {
    pub columns: ColumnMap,
    pub rows: Vec<SheetRow>,
}

/// The header cells of a sheet (as trimmed text) and its data rows, before any template's
/// columns are matched: what every import reading XLSX/CSV shares (the area import too).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSheet {
    pub headers: Vec<String>,
    pub rows: Vec<SheetRow>,
}

/// Checks a header row against one import's template (e.g. [`roster::map_headers`]), so a
/// file with missing columns is refused before its rows are read.
pub type HeaderCheck<'a> = &'a (dyn Fn(&[String]) -> Result<(), HeaderError> + Sync);

/// Excel serial day number (1900 or 1904 system) to YYYY-MM-DD.
fn excel_serial_date(serial: f64, is_1904: bool) -> Option<String> {
    let days = serial.floor() as i64;
    // 1900 system: day 1 is 1900-01-01 and Excel counts a 29 Feb 1900 that never existed,
    // so for every real date (serial > 60) the epoch is 1899-12-30.
    let epoch = if is_1904 {
        time::macros::date!(1904 - 01 - 01)
    } else {
        time::macros::date!(1899 - 12 - 30)
    };
    let date = epoch.checked_add(time::Duration::days(days))?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

fn cell_of(value: DataRef<'_>, is_1904: bool) -> Cell {
    match value {
        DataRef::Empty => Cell::Empty,
        DataRef::String(text) => Cell::Text(text),
        DataRef::SharedString(text) => Cell::Text(text.to_owned()),
        DataRef::Int(number) => Cell::Number(number as f64),
        DataRef::Float(number) => Cell::Number(number),
        DataRef::Bool(flag) => Cell::Bool(flag),
        DataRef::DateTime(datetime) if datetime.is_datetime() => {
            match excel_serial_date(datetime.as_f64(), is_1904) {
                Some(date) => Cell::Date(date),
                None => Cell::Error(format!("{}", datetime.as_f64())),
            }
        }
        DataRef::DateTime(datetime) => Cell::Number(datetime.as_f64()),
        DataRef::DateTimeIso(text) => Cell::Date(text.chars().take(10).collect()),
        DataRef::DurationIso(text) => Cell::Text(text),
        DataRef::Error(error) => Cell::Error(format!("{error}")),
    }
}

fn xlsx_error(error: XlsxError) -> ImportFileError {
    match error {
        XlsxError::Zip(zip) => ImportFileError::CorruptXlsx(zip.to_string()),
        XlsxError::FileNotFound(_) | XlsxError::RelationshipNotFound => {
            ImportFileError::NotAWorkbook
        }
        other => ImportFileError::CorruptXlsx(other.to_string()),
    }
}

/// Collects rows in sheet order: the first non-blank row is the header, later non-blank
/// rows are data.
struct RowCollector<'a> {
    header: Option<Vec<String>>,
    check_header: HeaderCheck<'a>,
    max_rows: usize,
    rows: Vec<SheetRow>,
    rows_read: &'a AtomicU64,
    on_header: Option<oneshot::Sender<Result<(), ImportFileError>>>,
}

impl RowCollector<'_> {
    fn push(&mut self, row: SheetRow) -> Result<(), ImportFileError> {
        if row.is_blank() {
            return Ok(());
        }
        if self.header.is_none() {
            let headers: Vec<String> = row.cells.iter().map(Cell::text).collect();
            match (self.check_header)(&headers) {
                Ok(()) => {
                    self.header = Some(headers);
                    if let Some(sender) = self.on_header.take() {
                        let _ = sender.send(Ok(()));
                    }
                    return Ok(());
                }
                Err(error) => return Err(error.into()),
            }
        }
        if self.rows.len() >= self.max_rows {
            return Err(ImportFileError::TooManyRows(self.max_rows));
        }
        self.rows.push(row);
        self.rows_read.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn finish(self) -> Result<RawSheet, ImportFileError> {
        let headers = self.header.ok_or(ImportFileError::NoHeader)?;
        Ok(RawSheet {
            headers,
            rows: self.rows,
        })
    }
}

fn read_xlsx(bytes: &[u8], collector: &mut RowCollector<'_>) -> Result<(), ImportFileError> {
    let mut workbook: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(xlsx_error)?;
    let is_1904 = workbook.has_1904_epoch();
    let sheet = workbook
        .sheet_names()
        .first()
        .cloned()
        .ok_or(ImportFileError::NoSheet)?;
    let mut cells = workbook
        .worksheet_cells_reader(&sheet)
        .map_err(xlsx_error)?;
    let mut current: Option<SheetRow> = None;
    while let Some(found) = cells.next_cell().map_err(xlsx_error)? {
        let (row, column) = found.get_position();
        let value = cell_of(found.get_value().clone(), is_1904);
        if current
            .as_ref()
            .is_some_and(|current| current.row_number != row + 1)
            && let Some(done) = current.take()
        {
            collector.push(done)?;
        }
        let current = current.get_or_insert_with(|| SheetRow {
            row_number: row + 1,
            cells: Vec::new(),
        });
        let column = column as usize;
        if current.cells.len() <= column {
            current.cells.resize(column + 1, Cell::Empty);
        }
        current.cells[column] = value;
    }
    if let Some(done) = current {
        collector.push(done)?;
    }
    Ok(())
}

fn read_csv(bytes: &[u8], collector: &mut RowCollector<'_>) -> Result<(), ImportFileError> {
    let text = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut record = csv::StringRecord::new();
    // Line numbers are counted from the bytes: the reader's own count starts a record at the
    // blank lines before it, but a spreadsheet shows the record's first non-blank line.
    let (mut counted_to, mut line) = (0_usize, 1_u64);
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let mut start = record
                    .position()
                    .map_or(counted_to, |position| position.byte() as usize)
                    .clamp(counted_to, text.len());
                while start < text.len() && matches!(text[start], b'\r' | b'\n') {
                    start += 1;
                }
                line += text[counted_to..start]
                    .iter()
                    .filter(|byte| **byte == b'\n')
                    .count() as u64;
                counted_to = start;
                collector.push(SheetRow {
                    row_number: u32::try_from(line).unwrap_or(u32::MAX),
                    cells: record
                        .iter()
                        .map(|field| Cell::Text(field.to_owned()))
                        .collect(),
                })?;
            }
            Err(error) => {
                if matches!(error.kind(), csv::ErrorKind::Utf8 { .. }) {
                    return Err(ImportFileError::NotUtf8);
                }
                return Err(ImportFileError::BadCsv {
                    line: error.position().map_or(line, |position| position.line()),
                    message: error.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Read a sniffed roster file into its column map and data rows. `on_header` is told as
/// soon as the header row has been read (or the file failed before it), so an upload can
/// answer file errors at once while the rows are still being read.
pub fn read_sheet(
    bytes: &[u8],
    format: FileFormat,
    rows_read: &AtomicU64,
    on_header: Option<oneshot::Sender<Result<(), ImportFileError>>>,
) -> Result<ParsedSheet, ImportFileError> {
    let check: HeaderCheck<'_> = &|headers| roster::map_headers(headers).map(|_| ());
    let raw = read_raw_sheet(bytes, format, rows_read, on_header, check, MAX_DATA_ROWS)?;
    Ok(ParsedSheet {
        columns: roster::map_headers(&raw.headers)?,
        rows: raw.rows,
    })
}

/// Read a sniffed file into its header cells and at most `max_rows` data rows, refusing a
/// header that `check_header` refuses. `on_header` as in [`read_sheet`].
pub fn read_raw_sheet(
    bytes: &[u8],
    format: FileFormat,
    rows_read: &AtomicU64,
    on_header: Option<oneshot::Sender<Result<(), ImportFileError>>>,
    check_header: HeaderCheck<'_>,
    max_rows: usize,
) -> Result<RawSheet, ImportFileError> {
    let mut collector = RowCollector {
        header: None,
        check_header,
        max_rows,
        rows: Vec::new(),
        rows_read,
        on_header,
    };
    let read = match format {
        FileFormat::Xlsx => read_xlsx(bytes, &mut collector),
        FileFormat::Csv => read_csv(bytes, &mut collector),
    };
    // Still pending means the header was never accepted: tell the uploader why.
    let pending = collector.on_header.take();
    let result = read.and_then(|()| collector.finish());
    if let Some(sender) = pending {
        let _ = sender.send(result.as_ref().map(|_| ()).map_err(Clone::clone));
    }
    result
}

// ---- the template ---------------------------------------------------------------------------

/// The empty template (导入模板) as XLSX: the header row, a notes row and one example
/// household, with ID and phone columns formatted as text.
pub fn template_xlsx() -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("花名册")?;
    let header = Format::new().set_bold().set_background_color("#DDEBF7");
    let note = Format::new()
        .set_italic()
        .set_font_color("#666666")
        .set_text_wrap();
    let text = Format::new().set_num_format("@");
    for (index, column) in Column::ALL.iter().enumerate() {
        let position = index as u16;
        sheet.write_string_with_format(0, position, column.header_zh(), &header)?;
        sheet.set_column_width(position, if column.required() { 14 } else { 12 })?;
        if matches!(
            column,
            Column::IdNumber | Column::Phone | Column::HouseholdNumber
        ) {
            sheet.set_column_format(position, &text)?;
            sheet.set_column_width(position, 22)?;
        }
    }
    // The notes row explains each column; officials delete it or keep it (a row whose 户编号
    // starts with "说明" is not data, see `is_template_note`).
    for (index, column) in Column::ALL.iter().enumerate() {
        let content = if index == 0 {
            format!("说明：{}", column.note_zh())
        } else {
            column.note_zh()
        };
        sheet.write_string_with_format(1, index as u16, &content, &note)?;
    }
    sheet.set_row_height(1, 60)?;
    sheet.set_freeze_panes(1, 0)?;
    workbook.save_to_buffer()
}

/// The template's notes row (户编号 starting with "说明：") is skipped, so an official can
/// fill the template in without deleting it.
fn is_template_note(row: &SheetRow, columns: &ColumnMap) -> bool {
    columns
        .position(Column::HouseholdNumber)
        .and_then(|position| row.cells.get(position))
        .is_some_and(|cell| cell.text().starts_with("说明："))
}

// ---- jobs -----------------------------------------------------------------------------------

/// One listed change of the preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeSample {
    pub row_number: u32,
    pub national_household_number: String,
    /// 户 for a household field, else the member's name.
    pub subject: String,
    pub field: String,
    pub old_value: Value,
    pub new_value: Value,
}

/// What the dry run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    pub data_rows: u64,
    pub bad_rows: usize,
    pub issues: Vec<RowIssue>,
    pub new_households: usize,
    pub new_members: usize,
    pub changed_fields: usize,
    pub unchanged_rows: u64,
    pub sample_changes: Vec<ChangeSample>,
    /// True when the file matches the store (无变化).
    pub no_changes: bool,
    /// Items the apply writes one by one (new households, members added to stored
    /// households, changed fields): the total of its progress bar.
    pub items_to_apply: u64,
}

/// The audit row of an applied import, as JSON shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRunView {
    pub run_id: String,
    pub households_created: u64,
    pub members_created: u64,
    pub fields_changed: u64,
    pub unchanged_rows: u64,
    pub applied_at_unix_ms: i64,
}

impl From<&ImportRun> for ImportRunView {
    fn from(run: &ImportRun) -> Self {
        ImportRunView {
            run_id: run.run_id.clone(),
            households_created: run.households_created,
            members_created: run.members_created,
            fields_changed: run.fields_changed,
            unchanged_rows: run.unchanged_rows,
            applied_at_unix_ms: (run.applied_at.unix_timestamp_nanos() / 1_000_000) as i64,
        }
    }
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// A change value as the preview lists it, on the page and in its JSON twin alike: phones
/// and ID numbers masked (DESIGN §7; the preview is kept with the job, so masked when made).
fn listed_value(field: &str, value: &Value) -> Value {
    let mut listed = value.clone();
    disclose_register_value(field, |_| Disclosure::Masked, &mut listed);
    listed
}

fn preview_of(validated: &roster::Validated, plan: &ImportPlan, stored: &[Household]) -> Preview {
    let households: HashMap<&str, &Household> = stored
        .iter()
        .map(|household| (household.household_id.as_str(), household))
        .collect();
    let sample_changes = plan
        .field_changes
        .iter()
        .take(SAMPLE_CHANGES)
        .map(|change| {
            let subject = match &change.target {
                fieldsync_model::register::FieldTarget::Household => "户".to_owned(),
                fieldsync_model::register::FieldTarget::Member(member_id) => households
                    .get(change.household_id.as_str())
                    .and_then(|card| {
                        card.members
                            .iter()
                            .find(|member| &member.member_id == member_id)
                    })
                    .map(|member| member.name.clone())
                    .unwrap_or_default(),
            };
            ChangeSample {
                row_number: change.row_number,
                national_household_number: change.national_household_number.clone(),
                subject,
                field: change.field.to_owned(),
                old_value: listed_value(&change.field, &change.old_value),
                new_value: listed_value(&change.field, &change.new_value),
            }
        })
        .collect();
    Preview {
        data_rows: validated.data_rows,
        bad_rows: validated.bad_row_count(),
        issues: validated.issues.clone(),
        new_households: plan.new_households.len(),
        new_members: plan.new_member_count(),
        changed_fields: plan.field_changes.len(),
        unchanged_rows: plan.unchanged_rows,
        sample_changes,
        no_changes: validated.issues.is_empty() && plan.is_empty(),
        items_to_apply: (plan.new_households.len()
            + plan.new_members.len()
            + plan.field_changes.len()) as u64,
    }
}

/// The roster import as an [`ImportKind`]: the job machinery is in [`crate::import_jobs`].
#[derive(Debug)]
pub struct RosterImport;

/// A roster import job on its runner.
pub type ImportJob = import_jobs::ImportJob<RosterImport>;
/// A roster import job as the page and the JSON twin show it.
pub type JobView = import_jobs::JobView<RosterImport>;

#[async_trait::async_trait]
impl ImportKind for RosterImport {
    const KIND: &'static str = "roster";
    const COUNTY_ONLY: &'static str = "仅县级管理员可导入花名册 (county administrators only)";
    const NO_CHANGES: &'static str = "文件与系统中的数据一致（无变化），无需导入";

    type Preview = Preview;
    type Plan = ImportPlan;
    type Run = ImportRunView;

    fn summary(preview: &Preview) -> PreviewSummary {
        PreviewSummary {
            bad_rows: preview.bad_rows,
            no_changes: preview.no_changes,
            items_to_apply: preview.items_to_apply,
        }
    }

    async fn dry_run(
        state: AppState,
        job: Arc<ImportJob>,
        bytes: Vec<u8>,
        format: FileFormat,
        on_header: oneshot::Sender<Result<(), ImportFileError>>,
    ) {
        let reading_job = Arc::clone(&job);
        let read = tokio::task::spawn_blocking(move || {
            read_sheet(&bytes, format, &reading_job.rows_read, Some(on_header))
            // `bytes` is dropped here: only the parsed rows are kept from now on.
        })
        .await;
        let sheet = match read {
            Ok(Ok(sheet)) => sheet,
            Ok(Err(error)) => return job.fail(error.to_string()),
            Err(error) => {
                tracing::error!(%error, "roster import reader panicked");
                return job.fail("读取文件时出现内部错误".into());
            }
        };
        job.set_phase(JobPhase::Validating);
        let county = match state.store.county_roster(&job.county_id).await {
            Ok(county) => county,
            Err(error) => {
                let error: ServiceError = error.into();
                return job.fail(error.to_string());
            }
        };
        let validating_job = Arc::clone(&job);
        let analysed = tokio::task::spawn_blocking(move || {
            let ParsedSheet { columns, mut rows } = sheet;
            rows.retain(|row| !is_template_note(row, &columns));
            let validated = roster::validate_rows(&rows, &columns, &county, &mut |done| {
                validating_job.rows_validated.store(done, Ordering::Relaxed);
            });
            // Every row read has now been dealt with, the template's note rows (skipped above)
            // included: the count ends equal to the rows read, so the bar ends at 100 %.
            validating_job.rows_validated.store(
                validating_job.rows_read.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            drop(rows);
            validating_job.set_phase(JobPhase::Comparing);
            let plan = roster::diff(&validated.households, &county.households, &mut || {
                uuid::Uuid::now_v7().to_string()
            });
            let preview = preview_of(&validated, &plan, &county.households);
            (preview, plan)
        })
        .await;
        match analysed {
            Ok((preview, plan)) => job.ready(preview, plan),
            Err(error) => {
                tracing::error!(%error, "roster import validation panicked");
                job.fail("校验时出现内部错误".into());
            }
        }
    }

    async fn apply(
        app: &AppState,
        job: &ImportJob,
        plan: ImportPlan,
        preview: &Preview,
        principal: &Principal,
    ) -> Result<ImportRunView, ServiceError> {
        let run = ImportRun {
            run_id: job.job_id.clone(),
            county_id: job.county_id.clone(),
            file_name: job.file_name.clone(),
            file_sha256: job.file_sha256.clone(),
            file_bytes: job.file_bytes,
            data_rows: preview.data_rows,
            households_created: preview.new_households as u64,
            members_created: preview.new_members as u64,
            fields_changed: preview.changed_fields as u64,
            unchanged_rows: preview.unchanged_rows,
            applied_by_user_id: principal.user_id.clone(),
            applied_by_name: principal.display_name.clone(),
            applied_at: app.clock.now(),
        };
        let apply = RosterImportApply {
            run,
            plan,
            stamp: Stamp {
                hlc: app.tick_hlc(),
                device_id: ROSTER_IMPORT_DEVICE.to_owned(),
            },
            applied_items: Arc::clone(&job.items_applied),
        };
        let run = app.store.apply_roster_import(apply).await?;
        // The import's own `import_runs` row is written in its transaction; the hash-chained
        // audit log gets a record too, so one log answers "who changed the register". A
        // failure here is logged, never undoes the applied import.
        if let Err(error) = app.store.append_audit(import_audit(&run)).await {
            tracing::error!(%error, run_id = %run.run_id, "roster import not in the audit log");
        }
        Ok(ImportRunView::from(&run))
    }

    async fn applied_run(
        app: &AppState,
        county_id: &str,
        job_id: &str,
    ) -> Result<Option<ImportRunView>, ServiceError> {
        let runs = app.store.import_runs(county_id, RECENT_RUNS).await?;
        Ok(runs
            .iter()
            .find(|run| run.run_id == job_id)
            .map(ImportRunView::from))
    }
}

/// The audit-log record of an applied import.
fn import_audit(run: &ImportRun) -> fieldsync_model::access::AuditContent {
    fieldsync_model::access::AuditContent {
        recorded_at_ms: i64::try_from(run.applied_at.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX),
        actor_user_id: run.applied_by_user_id.clone(),
        actor_role: fieldsync_model::codes::Role::County.as_str().to_owned(),
        area_id: run.county_id.clone(),
        action: fieldsync_model::access::ACTION_ROSTER_IMPORT.to_owned(),
        subject: run.file_name.clone(),
        filter: format!("run={}", run.run_id),
        row_count: run.data_rows,
        file_sha256: run.file_sha256.clone(),
        detail: format!(
            "花名册导入：新增{}户、{}人，修改{}项",
            run.households_created, run.members_created, run.fields_changed
        ),
    }
}

/// The county's applied imports, newest first (the import audit).
pub async fn recent_runs(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<ImportRun>, ServiceError> {
    let county_id = import_jobs::county_admin::<RosterImport>(principal)?;
    Ok(state.store.import_runs(county_id, RECENT_RUNS).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_the_bytes_not_the_name() {
        assert_eq!(sniff(b"PK\x03\x04rest", 100), Ok(FileFormat::Xlsx));
        assert_eq!(sniff("户编号,姓名\n".as_bytes(), 100), Ok(FileFormat::Csv));
        let with_bom = [UTF8_BOM, "户编号,姓名\n".as_bytes()].concat();
        assert_eq!(sniff(&with_bom, 100), Ok(FileFormat::Csv));
        assert_eq!(sniff(b"", 100), Err(ImportFileError::Empty));
        assert_eq!(sniff(UTF8_BOM, 100), Err(ImportFileError::Empty));
        assert_eq!(sniff(b" \r\n", 100), Err(ImportFileError::Empty));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0", 100),
            Err(ImportFileError::UnknownFormat)
        );
        assert_eq!(
            sniff(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 100),
            Err(ImportFileError::LegacyXls)
        );
        // "户编号" in GBK.
        assert_eq!(
            sniff(b"\xbb\xa7\xb1\xe0\xba\xc5,a\n", 100),
            Err(ImportFileError::NotUtf8)
        );
        assert_eq!(
            sniff(&[b'a'; 2048], 1024),
            Err(ImportFileError::TooLarge { limit_mib: 0 })
        );
        assert!(
            ImportFileError::TooLarge { limit_mib: 30 }
                .to_string()
                .contains("30 MiB")
        );
    }

    #[test]
    fn excel_serial_dates_convert_in_both_systems() {
        assert_eq!(
            excel_serial_date(45658.0, false).as_deref(),
            Some("2025-01-01")
        );
        assert_eq!(
            excel_serial_date(21916.0, false).as_deref(),
            Some("1960-01-01")
        );
        assert_eq!(excel_serial_date(0.0, true).as_deref(), Some("1904-01-01"));
    }

    #[test]
    fn the_template_reads_back_with_every_column_and_no_data_rows() {
        let bytes = template_xlsx().expect("template");
        let rows_read = AtomicU64::new(0);
        let sheet = read_sheet(&bytes, FileFormat::Xlsx, &rows_read, None).expect("reads");
        for column in Column::ALL {
            assert!(sheet.columns.has(*column), "{column:?}");
        }
        let data: Vec<&SheetRow> = sheet
            .rows
            .iter()
            .filter(|row| !is_template_note(row, &sheet.columns))
            .collect();
        assert!(data.is_empty(), "only the notes row: {data:?}");
    }

    #[test]
    fn csv_rows_keep_their_line_numbers_and_missing_headers_are_named() {
        let text = "\u{feff}户编号,乡镇\r\n\r\nH1,\"多行\n文本\"\r\nH2,镇\r\n";
        let rows_read = AtomicU64::new(0);
        let error = read_sheet(text.as_bytes(), FileFormat::Csv, &rows_read, None)
            .expect_err("most columns missing");
        assert!(matches!(
            error,
            ImportFileError::Header(HeaderError::MissingColumns(_))
        ));
        let headers: Vec<&str> = Column::ALL
            .iter()
            .map(|column| column.header_zh())
            .collect();
        let text = format!("{}\n\nH1,\"多行\n文本\"\nH2,镇\n", headers.join(","));
        let sheet = read_sheet(text.as_bytes(), FileFormat::Csv, &rows_read, None).expect("reads");
        let numbers: Vec<u32> = sheet.rows.iter().map(|row| row.row_number).collect();
        assert_eq!(numbers, vec![3, 5]);
    }
}
