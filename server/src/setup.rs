//! First run without the demo (issue 12 §1): `fieldsync-server init` makes the data
//! folder, the key folder, the database, the county and its first administrator (县级管理员)
//! with a one-time password, and a server started on a folder nobody initialised refuses
//! with a message saying what to run.
//!
//! The one-time password is generated here (or read from a file the operator wrote) and
//! handed back to the caller, which prints it to the terminal once; it never goes through
//! `tracing`, so it cannot land in a log file. The first login must change it.

use std::path::{Path, PathBuf};

use fieldsync_model::codes::Role;
use fieldsync_model::policy;
use rand::Rng;
use time::OffsetDateTime;

use crate::store::accounts::{CadreDetails, NewAccount};
use crate::store::{Area, AuditContent, SeedData, Store};
use crate::{ServerError, auth, settings::Settings};

/// Characters of generated one-time passwords: no 0/O, 1/l/I, which read alike on a
/// printed sheet.
const ONE_TIME_PASSWORD_ALPHABET: &[u8] =
    b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
/// Length of generated one-time passwords (about 69 bits).
const ONE_TIME_PASSWORD_LENGTH: usize = 12;

/// Audit action of `init`.
pub const ACTION_INIT: &str = "init";

/// Why `init` refused or failed. Nothing is written in the refusals.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "数据目录已初始化，{accounts} 个账号已存在 (the data folder {} is already initialised); \
         nothing was changed",
        data_dir.display()
    )]
    AlreadyInitialised { data_dir: PathBuf, accounts: u64 },
    #[error(
        "县级区划代码应为12位数字且以000000结尾，如 610625000000 (county code: 12 digits ending in 000000): {0:?}"
    )]
    BadCountyCode(String),
    #[error("县名不能为空 (county name is empty)")]
    EmptyCountyName,
    #[error("管理员用户名 (admin username): {0}")]
    BadUsername(#[from] policy::UsernameError),
    #[error("密码文件 {}: {message}", path.display())]
    PasswordFile { path: PathBuf, message: String },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Hashing(String),
}

/// What `init` is asked to create.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// 12-digit 统计用区划代码 of the county (ends in 000000).
    pub county_code: String,
    pub county_name: String,
    pub admin_username: String,
    pub admin_display_name: String,
    /// A file holding the first password (first line); `None` generates one.
    pub password_file: Option<PathBuf>,
}

/// What `init` created.
#[derive(Debug)]
pub struct InitReport {
    pub admin_username: String,
    /// The generated one-time password, to print once; `None` when it came from a file.
    pub generated_password: Option<String>,
    pub database: PathBuf,
    pub key_dir: PathBuf,
}

/// A fresh one-time password from the operating system's random source.
pub fn one_time_password() -> String {
    let mut random = rand::rng();
    (0..ONE_TIME_PASSWORD_LENGTH)
        .map(|_| {
            let index = random.random_range(0..ONE_TIME_PASSWORD_ALPHABET.len());
            char::from(ONE_TIME_PASSWORD_ALPHABET[index])
        })
        .collect()
}

fn read_password_file(path: &Path) -> Result<String, SetupError> {
    let refuse = |message: String| SetupError::PasswordFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| refuse(error.to_string()))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    // The same rules as a password change (length, not blank).
    auth::check_new_password("", &password).map_err(|error| refuse(error.to_string()))?;
    Ok(password)
}

fn check_county(request: &InitRequest) -> Result<(), SetupError> {
    let code = request.county_code.trim();
    let is_county_code = code.len() == 12
        && code.bytes().all(|byte| byte.is_ascii_digit())
        && code.ends_with("000000")
        && !code.ends_with("0000000000");
    if !is_county_code {
        return Err(SetupError::BadCountyCode(request.county_code.clone()));
    }
    if request.county_name.trim().is_empty() {
        return Err(SetupError::EmptyCountyName);
    }
    policy::check_username(&request.admin_username)?;
    Ok(())
}

/// Create the county and its first administrator in the folders `settings` names. Refuses
/// (changing nothing) when the database already holds an account.
pub async fn init(settings: &Settings, request: InitRequest) -> Result<InitReport, SetupError> {
    check_county(&request)?;
    let (password, generated_password) = match &request.password_file {
        Some(path) => (read_password_file(path)?, None),
        None => {
            let password = one_time_password();
            (password.clone(), Some(password))
        }
    };
    let state = crate::open_state(settings.clone()).await?;
    let accounts = state.store.account_count().await?;
    if accounts > 0 {
        return Err(SetupError::AlreadyInitialised {
            data_dir: settings.data_dir.clone(),
            accounts,
        });
    }
    let county_id = request.county_code.trim().to_owned();
    let existing_county = state.store.get_area(&county_id).await?;
    if existing_county.is_none() {
        state
            .store
            .load_seed(SeedData {
                areas: vec![Area {
                    area_id: county_id.clone(),
                    name: request.county_name.trim().to_owned(),
                    level: "county".into(),
                    parent_id: None,
                    centre: None,
                }],
                ..SeedData::default()
            })
            .await?;
    }
    let password_hash = state
        .login_guard
        .pool
        .hash(&password)
        .await
        .map_err(|error| SetupError::Hashing(error.to_string()))?;
    let now = state.clock.now();
    let user_id = uuid::Uuid::now_v7().to_string();
    state
        .store
        .create_account(NewAccount {
            user_id: user_id.clone(),
            username: request.admin_username.clone(),
            display_name: nonempty_or(&request.admin_display_name, "县级管理员"),
            role: Role::County,
            area_id: county_id.clone(),
            phone: String::new(),
            rank: None,
            details: CadreDetails::default(),
            password_hash,
            must_change_password: true,
            created_at: now,
        })
        .await?;
    state
        .store
        .append_audit(init_audit(&user_id, &county_id, &request, now))
        .await?;
    Ok(InitReport {
        admin_username: request.admin_username,
        generated_password,
        database: settings.sqlite_path(),
        key_dir: settings.key_dir(),
    })
}

fn nonempty_or(text: &str, fallback: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        fallback.to_owned()
    } else {
        text.to_owned()
    }
}

fn init_audit(
    admin_user_id: &str,
    county_id: &str,
    request: &InitRequest,
    now: OffsetDateTime,
) -> AuditContent {
    AuditContent {
        recorded_at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        actor_user_id: "fieldsync-server init".into(),
        actor_role: "system".into(),
        area_id: county_id.to_owned(),
        action: ACTION_INIT.into(),
        subject: admin_user_id.to_owned(),
        filter: String::new(),
        row_count: 0,
        file_sha256: String::new(),
        detail: format!(
            "初始化 {}（{}），首个县级管理员 {} (county and first administrator created)",
            request.county_name.trim(),
            county_id,
            request.admin_username
        ),
    }
}

/// Why the server will not serve a folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "数据目录 {} 尚未初始化 (the data folder is not initialised).\n\
     先运行 (run first):  fieldsync-server --data-dir {} init --county-code <12位县级区划代码> \
     --county-name <县名> --admin-username admin\n\
     或试用示范县 (or try the demo county):  fieldsync-server --data-dir {} --demo",
    data_dir.display(),
    data_dir.display(),
    data_dir.display()
)]
pub struct NotInitialised {
    pub data_dir: PathBuf,
}

/// Refuse to serve a folder without a database. Checked before anything is created, so a
/// mistyped `--data-dir` leaves no empty folder behind.
pub fn require_database(settings: &Settings) -> Result<(), NotInitialised> {
    // A PostgreSQL database is checked once it is open (`require_accounts`): its server
    // may not be up yet, and the listener should answer meanwhile.
    if crate::uses_postgres(settings) || settings.sqlite_path().is_file() {
        Ok(())
    } else {
        Err(NotInitialised {
            data_dir: settings.data_dir.clone(),
        })
    }
}

/// Refuse to serve a database without any account (one made by an interrupted `init`, or
/// by hand): nobody could log in to it.
pub async fn require_accounts(store: &dyn Store, settings: &Settings) -> Result<(), ServerError> {
    if store.account_count().await? == 0 {
        return Err(ServerError::Setup(
            NotInitialised {
                data_dir: settings.data_dir.clone(),
            }
            .to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: &str, name: &str, username: &str) -> InitRequest {
        InitRequest {
            county_code: code.into(),
            county_name: name.into(),
            admin_username: username.into(),
            admin_display_name: String::new(),
            password_file: None,
        }
    }

    #[test]
    fn county_codes_are_twelve_digits_at_county_level() {
        assert!(check_county(&request("610625000000", "志丹县", "admin")).is_ok());
        for bad in [
            "61062500000",
            "6106250000000",
            "61062500000x",
            "610625001000",
            "610000000000",
        ] {
            assert!(
                matches!(
                    check_county(&request(bad, "志丹县", "admin")),
                    Err(SetupError::BadCountyCode(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_county(&request("610625000000", "  ", "admin")),
            Err(SetupError::EmptyCountyName)
        ));
        assert!(matches!(
            check_county(&request("610625000000", "志丹县", "管理员")),
            Err(SetupError::BadUsername(_))
        ));
    }

    #[test]
    fn one_time_passwords_are_long_unambiguous_and_different() {
        let first = one_time_password();
        assert_eq!(first.chars().count(), ONE_TIME_PASSWORD_LENGTH);
        assert!(
            first
                .bytes()
                .all(|byte| ONE_TIME_PASSWORD_ALPHABET.contains(&byte))
        );
        assert!(!first.contains(['0', 'O', '1', 'l', 'I']));
        assert!(auth::check_new_password("", &first).is_ok());
        assert_ne!(first, one_time_password());
    }
}
