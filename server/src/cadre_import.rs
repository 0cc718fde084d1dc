//! Cadre roster import (帮扶干部花名册导入, issue 12 §3): the county administrator uploads the
//! roster as XLSX or CSV, sees a dry run (rows to create, rows already accounts, every bad
//! cell by row and column), then applies it: one account per new cadre in one store
//! transaction, each with a one-time password, for the administrator to print or download
//! as XLSX; each showing and download is audited. The checked roster and, once applied, the
//! passwords are stored as an import job (sealed at rest with the personal-data key, deleted
//! with the job after a week), so any replica shows them and a restart loses nothing.
//!
//! The file is read by the roster import's reader (same sniffing, GBK and legacy-XLS
//! refusals, header check before the rows); the rows are checked by the pure
//! `model::cadre_roster` rules against the county's townships and existing accounts. A
//! re-import of the same file creates nothing (existing ID numbers are skipped).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use fieldsync_model::cadre_roster::{
    self, CadreColumn, CadreEntry, CadreRosterCheck, ExistingAccounts, MAX_CADRE_ROWS, TownshipName,
};
use fieldsync_model::codes::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth;
use crate::error::ServiceError;
use crate::roster_import::{self, HeaderCheck, MAX_IMPORT_BYTES, Upload};
use crate::store::accounts::{AccountFilter, CadreDetails, NewAccount};
use crate::store::jobs::ImportJobRecord;
use crate::store::{Principal, decode_json, encode_json};

/// Audit action of an applied cadre roster.
pub const ACTION_CADRE_IMPORT: &str = "cadre_roster_import";
/// Audit action of a download of the one-time passwords.
pub const ACTION_CREDENTIALS_DOWNLOAD: &str = "cadre_credentials_download";
/// Audit action of a showing of the one-time passwords on the console page.
pub const ACTION_CREDENTIALS_SHOWN: &str = "cadre_credentials_shown";

/// The kind of a cadre import in the store's import jobs.
const KIND: &str = "cadres";

/// A stored job's `plan_json` while the plan may be applied: the plan itself is in the
/// job's view (the page shows all of it), but the store's claim needs a plan to hand over.
const APPLICABLE: &str = "{}";

/// One new account's login, to hand over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub row_number: u32,
    pub name: String,
    pub username: String,
    pub township: String,
    pub one_time_password: String,
}

/// A checked upload, waiting to be applied (or applied, with its credentials). Stored as
/// an import job (sealed at rest), so any replica shows and applies it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CadrePlan {
    pub plan_id: String,
    pub county_id: String,
    pub file_name: String,
    pub file_sha256: String,
    pub check: CadreRosterCheck,
    pub townships: Vec<TownshipName>,
    /// The new accounts' one-time passwords, once applied.
    credentials: Option<Vec<Credential>>,
}

impl CadrePlan {
    /// The credentials once applied.
    pub fn credentials(&self) -> Option<Vec<Credential>> {
        self.credentials.clone()
    }

    /// The township's name for a township id.
    pub fn township_name(&self, township_id: &str) -> String {
        self.townships
            .iter()
            .find(|township| township.area_id == township_id)
            .map_or_else(|| township_id.to_owned(), |township| township.name.clone())
    }

    /// The plan's import-job record, written by `runner`: applicable while it has no
    /// credentials.
    fn record(&self, runner: &str, now: OffsetDateTime) -> Result<ImportJobRecord, ServiceError> {
        let applied = self.credentials.is_some();
        Ok(ImportJobRecord {
            job_id: self.plan_id.clone(),
            kind: KIND.to_owned(),
            county_id: self.county_id.clone(),
            runner: runner.to_owned(),
            phase: if applied { "applied" } else { "ready" }.to_owned(),
            created_at: now,
            heartbeat_at: now,
            view_json: encode_json(self)?,
            plan_json: (!applied).then(|| APPLICABLE.to_owned()),
        })
    }
}

/// A plan of the administrator's county, from the store; others are unknown.
pub async fn plan(
    app: &AppState,
    principal: &Principal,
    plan_id: &str,
) -> Result<CadrePlan, ServiceError> {
    let county = administrator_county(principal)?;
    let record = app
        .store
        .import_job(KIND, county, plan_id)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "import {plan_id} (导入记录不存在或已过期，请重新上传)"
            ))
        })?;
    Ok(decode_json(&record.view_json, "cadre import plan")?)
}

fn administrator_county(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::County => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有县级管理员可以导入帮扶干部花名册 (only the county administrator imports cadres)"
                .into(),
        )),
    }
}

/// The county's townships and the accounts that already exist there.
async fn county_context(
    app: &AppState,
    county: &str,
) -> Result<(Vec<TownshipName>, ExistingAccounts), ServiceError> {
    let townships = app
        .store
        .list_areas(Some(county))
        .await?
        .into_iter()
        .filter(|area| area.level == "township")
        .map(|area| TownshipName {
            area_id: area.area_id,
            name: area.name,
        })
        .collect();
    let mut existing = ExistingAccounts::default();
    for account in app
        .store
        .accounts(&AccountFilter {
            area_id: county.to_owned(),
            role: None,
            include_disabled: true,
        })
        .await?
    {
        if !account.details.id_number.is_empty() {
            existing.by_id_number.insert(
                account.details.id_number.to_uppercase(),
                account.username.clone(),
            );
        }
        existing.usernames.insert(account.username);
    }
    Ok((townships, existing))
}

/// Read and check an upload (nothing is stored). File problems are `InvalidArgument` with
/// the reason in Chinese.
pub async fn dry_run(
    app: &AppState,
    principal: &Principal,
    upload: Upload,
) -> Result<CadrePlan, ServiceError> {
    let county = administrator_county(principal)?.to_owned();
    let (townships, existing) = county_context(app, &county).await?;
    let file_sha256 = hex::encode(Sha256::digest(&upload.bytes));
    let rows_townships = townships.clone();
    let check = tokio::task::spawn_blocking(move || {
        let format = roster_import::sniff(&upload.bytes, MAX_IMPORT_BYTES)?;
        let header_check: HeaderCheck<'_> =
            &|headers| cadre_roster::map_cadre_headers(headers).map(|_| ());
        let rows_read = AtomicU64::new(0);
        let sheet = roster_import::read_raw_sheet(
            &upload.bytes,
            format,
            &rows_read,
            None,
            header_check,
            MAX_CADRE_ROWS,
        )?;
        let columns = cadre_roster::map_cadre_headers(&sheet.headers)
            .map_err(roster_import::ImportFileError::from)?;
        Ok::<_, roster_import::ImportFileError>(cadre_roster::check_cadre_rows(
            &columns,
            &sheet.rows,
            &rows_townships,
            &existing,
        ))
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "cadre roster check failed");
        ServiceError::Internal
    })?
    .map_err(|error| ServiceError::invalid("file", error.to_string()))?;
    let plan = CadrePlan {
        plan_id: uuid::Uuid::now_v7().to_string(),
        county_id: county,
        file_name: upload.file_name,
        file_sha256,
        check,
        townships,
        credentials: None,
    };
    // Stored before the administrator is sent to the plan's page, which any replica may
    // serve; the dry run's own runner id is never used again.
    let record = plan.record(&uuid::Uuid::now_v7().to_string(), app.clock.now())?;
    app.store.save_import_job(&record).await?;
    Ok(plan)
}

/// Create the plan's new cadres in one transaction, each with a one-time password, and
/// store the passwords with the plan (sealed). Rows that became accounts since the dry run
/// are skipped (checked again now). Applying twice is refused, on any replica: the store
/// hands the plan to one apply.
pub async fn apply(
    app: &AppState,
    principal: &Principal,
    plan_id: &str,
) -> Result<Vec<Credential>, ServiceError> {
    let already_applied = || {
        ServiceError::invalid(
            "plan",
            "此名单已导入，请勿重复导入 (this roster was already applied)",
        )
    };
    let mut plan = plan(app, principal, plan_id).await?;
    if plan.credentials.is_some() {
        return Err(already_applied());
    }
    let (_, existing) = county_context(app, &plan.county_id).await?;
    let entries: Vec<&CadreEntry> = plan
        .check
        .new_cadres
        .iter()
        .filter(|entry| {
            !existing.by_id_number.contains_key(&entry.id_number)
                && !existing.usernames.contains(&entry.mobile)
        })
        .collect();
    let now = app.clock.now();
    let mut credentials = Vec::with_capacity(entries.len());
    let mut accounts = Vec::with_capacity(entries.len());
    // Hash on the bounded pool, many at once: a roster of a thousand cadres is a thousand
    // argon2id hashes.
    let mut hashing = tokio::task::JoinSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let password = crate::setup::one_time_password();
        let guard = Arc::clone(&app.login_guard);
        let to_hash = password.clone();
        hashing.spawn(async move { (index, guard.pool.hash(&to_hash).await) });
        credentials.push(Credential {
            row_number: entry.row_number,
            name: entry.name.clone(),
            username: entry.mobile.clone(),
            township: plan.township_name(&entry.township_id),
            one_time_password: password,
        });
    }
    let mut hashes: HashMap<usize, String> = HashMap::with_capacity(entries.len());
    while let Some(joined) = hashing.join_next().await {
        let (index, hash) = joined.map_err(|_| ServiceError::Internal)?;
        hashes.insert(
            index,
            hash.map_err(|error| {
                tracing::error!(%error, "password hashing failed");
                ServiceError::Internal
            })?,
        );
    }
    for (index, entry) in entries.iter().enumerate() {
        accounts.push(NewAccount {
            user_id: uuid::Uuid::now_v7().to_string(),
            username: entry.mobile.clone(),
            display_name: entry.name.clone(),
            role: Role::Cadre,
            area_id: entry.township_id.clone(),
            phone: entry.mobile.clone(),
            rank: entry.rank,
            details: CadreDetails {
                unit: entry.unit.clone(),
                id_number: entry.id_number.clone(),
                team_member: entry.team_member,
                active_from: entry.active_from.clone(),
                active_to: entry.active_to.clone(),
            },
            password_hash: hashes.remove(&index).unwrap_or_default(),
            must_change_password: true,
            created_at: now,
        });
    }
    // Claim the plan before writing, so two clicks (on one replica or two) cannot both
    // create accounts.
    let runner = uuid::Uuid::now_v7().to_string();
    app.store
        .claim_import_apply(KIND, &plan.county_id, &plan.plan_id, &runner, now)
        .await?
        .ok_or_else(already_applied)?;
    // The accounts and the plan with their one-time passwords (sealed) are written in one
    // transaction, so no crash can leave accounts whose passwords nobody holds.
    plan.credentials = Some(credentials.clone());
    let created = app
        .store
        .create_accounts(accounts, &plan.record(&runner, now)?)
        .await;
    if let Err(error) = created {
        // Nothing was created: the plan may be applied again.
        plan.credentials = None;
        app.store
            .save_import_job(&plan.record(&runner, now)?)
            .await?;
        return Err(match error {
            crate::store::StoreError::Conflict(message) => ServiceError::invalid(
                "file",
                format!("有账号在预览后被占用，请重新上传预览 ({message})"),
            ),
            other => other.into(),
        });
    }
    let mut record = auth::audit_record(
        principal,
        ACTION_CADRE_IMPORT,
        &plan.file_name,
        &format!("plan={}", plan.plan_id),
        format!(
            "导入帮扶干部花名册：新建 {} 个账号，已有 {} 人跳过，{} 行有误未导入 (cadre roster applied)",
            credentials.len(),
            plan.check.existing.len() + plan.check.new_cadres.len() - credentials.len(),
            plan.check.bad_row_count()
        ),
        now,
    );
    record.row_count = credentials.len() as u64;
    record.file_sha256 = plan.file_sha256.clone();
    app.store.append_audit(record).await?;
    Ok(credentials)
}

/// The one-time passwords of an applied plan for the printable page (`None` before it is
/// applied), audited like the download: both disclose every new account's password.
pub async fn credentials_shown(
    app: &AppState,
    principal: &Principal,
    plan_id: &str,
) -> Result<(CadrePlan, Option<Vec<Credential>>), ServiceError> {
    let plan = plan(app, principal, plan_id).await?;
    let credentials = plan.credentials();
    if let Some(shown) = credentials.as_ref().filter(|list| !list.is_empty()) {
        let mut record = auth::audit_record(
            principal,
            ACTION_CREDENTIALS_SHOWN,
            &plan.file_name,
            &format!("plan={}", plan.plan_id),
            format!(
                "查看帮扶干部一次性密码（{} 人）(one-time passwords shown)",
                shown.len()
            ),
            app.clock.now(),
        );
        record.row_count = shown.len() as u64;
        app.store.append_audit(record).await?;
    }
    Ok((plan, credentials))
}

/// The one-time passwords of an applied plan as XLSX, audited as a download.
pub async fn credentials_xlsx(
    app: &AppState,
    principal: &Principal,
    plan_id: &str,
) -> Result<Vec<u8>, ServiceError> {
    let plan = plan(app, principal, plan_id).await?;
    let credentials = plan
        .credentials()
        .filter(|list| !list.is_empty())
        .ok_or_else(|| {
            ServiceError::NotFound(format!("import {plan_id} has no new accounts (无新建账号)"))
        })?;
    let bytes = credentials_workbook(&credentials).map_err(|error| {
        tracing::error!(%error, "credentials workbook failed");
        ServiceError::Internal
    })?;
    let mut record = auth::audit_record(
        principal,
        ACTION_CREDENTIALS_DOWNLOAD,
        &plan.file_name,
        &format!("plan={}", plan.plan_id),
        format!(
            "下载帮扶干部一次性密码表（{} 人）(one-time passwords downloaded)",
            credentials.len()
        ),
        app.clock.now(),
    );
    record.row_count = credentials.len() as u64;
    record.file_sha256 = hex::encode(Sha256::digest(&bytes));
    app.store.append_audit(record).await?;
    Ok(bytes)
}

fn credentials_workbook(credentials: &[Credential]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("一次性密码")?;
    let bold = Format::new().set_bold();
    let text = Format::new().set_num_format("@");
    for (column, header) in ["行号", "姓名", "乡镇", "用户名（手机号）", "一次性密码"]
        .iter()
        .enumerate()
    {
        sheet.write_string_with_format(0, column as u16, *header, &bold)?;
    }
    for (index, credential) in credentials.iter().enumerate() {
        let row = index as u32 + 1;
        sheet.write_number(row, 0, f64::from(credential.row_number))?;
        sheet.write_string(row, 1, &credential.name)?;
        sheet.write_string(row, 2, &credential.township)?;
        sheet.write_string_with_format(row, 3, &credential.username, &text)?;
        sheet.write_string_with_format(row, 4, &credential.one_time_password, &text)?;
    }
    sheet.set_column_width(3, 18)?;
    sheet.set_column_width(4, 16)?;
    workbook.save_to_buffer()
}

/// The empty template (header row, notes row, one example) as XLSX.
pub fn template_xlsx() -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.set_name("帮扶干部花名册")?;
    let bold = Format::new().set_bold();
    let text = Format::new().set_num_format("@");
    let example = [
        "孙丽",
        "13912345678",
        "11010519491231002X",
        "县农业农村局",
        "科级",
        "（乡镇名称）",
        "是",
        "2026-03-01",
        "",
    ];
    for (column, cadre_column) in CadreColumn::ALL.iter().enumerate() {
        let column = column as u16;
        sheet.write_string_with_format(0, column, cadre_column.header_zh(), &bold)?;
        sheet.write_string(1, column, cadre_column.note_zh())?;
        sheet.write_string_with_format(2, column, example[column as usize], &text)?;
        sheet.set_column_format(column, &text)?;
        sheet.set_column_width(column, 16)?;
    }
    workbook.save_to_buffer()
}
