//! `fieldsync-server`: the thin binary around [`fieldsync_server::serve_when_open`]. It reads
//! settings (defaults, TOML file, `FIELDSYNC_*` environment, then command-line flags; an
//! unknown variable is named in a warning and ignored, a settings error is one line),
//! optionally seeds the demo county, and serves until Ctrl-C or SIGTERM. `init` sets a
//! county up for its first run; maintenance subcommands (`audit verify`, `keys rotate-pii`,
//! `backup`, `restore`) run instead of serving and exit. A folder that is neither
//! initialised nor `--demo` is refused.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fieldsync_server::settings::Settings;
use fieldsync_server::{ServerError, backup, demo};

/// fieldsync server: gRPC sync for the phones and the supervisor console on one port.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Arguments {
    /// Seed a demo county (2 townships, 6 villages, 300+ households, cadres and supervisors)
    /// when the data folder is empty, and print the demo logins.
    #[arg(long)]
    demo: bool,
    /// Folder for the SQLite file and the photo blobs (default ./fieldsync-data); also
    /// names the folder the maintenance commands work on.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7700).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// TOML settings file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PEM certificate chain: serve gRPC and the console over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Folder of the server's secret keys (default `<data-dir>-keys`).
    #[arg(long, global = true)]
    key_dir: Option<PathBuf>,
    /// Without a command the server serves.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// First run without the demo: create the data and key folders, the database, the
    /// county and its first administrator (县级管理员), whose one-time password is printed
    /// once (or read from --password-file) and must be changed at first login.
    Init {
        /// 12-digit 统计用区划代码 of the county, e.g. 610625000000.
        #[arg(long)]
        county_code: String,
        /// The county's name, e.g. 志丹县.
        #[arg(long)]
        county_name: String,
        /// Login name of the first administrator.
        #[arg(long, default_value = "admin")]
        admin_username: String,
        /// Display name of the first administrator.
        #[arg(long, default_value = "县级管理员")]
        admin_name: String,
        /// Read the first password from this file (first line) instead of generating one.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// The audit log (审计日志).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Server keys (the key folder, outside the data folder).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Back up the database and photos into a new or empty folder, while the server serves
    /// (docs/operations.md). Exit 3 when some stored photo is missing or damaged.
    Backup {
        destination: PathBuf,
        /// Also copy the key folder into the backup (it then opens without the key folder;
        /// keep it on an encrypted, access-controlled disk).
        #[arg(long)]
        with_keys: bool,
    },
    /// Restore a backup into a new or empty data folder (never over a live one).
    Restore { source: PathBuf },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new personal-data key and reseal every stored ID and phone number with it;
    /// the old key is kept as pii-<key_id>.key so backups stay readable. Stop the server
    /// first.
    RotatePii,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the whole audit chain: exit 0 with the count verified, exit 3 naming the
    /// first bad record, exit 1 when it cannot be checked (no database, unreadable key).
    Verify,
}

/// Exit code of `init` when it refuses or fails, and of serving a folder nobody
/// initialised: the message says what to do.
const EXIT_SETUP_REFUSED: i32 = 4;

/// Exit code of `audit verify` when the chain is broken (2 is clap's usage error, 1 any
/// other failure such as an unreadable key).
const EXIT_CHAIN_BROKEN: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    // A settings problem is the operator's to fix: one clear line and exit 1, no error
    // chain or backtrace (anyhow prints one when RUST_BACKTRACE is set).
    let loaded = match Settings::load_reporting(arguments.config.as_deref(), std::env::vars()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("fieldsync-server: {error}");
            std::process::exit(1);
        }
    };
    let mut settings = loaded.settings;
    fieldsync_server::logging::init(&settings);
    for variable in &loaded.ignored_variables {
        tracing::warn!(%variable, "ignoring unknown FIELDSYNC_* environment variable: it names no setting");
    }
    if let Some(data_dir) = arguments.data_dir {
        settings.data_dir = data_dir;
    }
    if let Some(key_dir) = arguments.key_dir {
        settings.key_dir = Some(key_dir);
    }
    if fieldsync_server::uses_postgres(&settings)
        && let Some(refusal) = refusal_on_postgres(arguments.command.as_ref())
    {
        eprintln!("{refusal}");
        std::process::exit(EXIT_SETUP_REFUSED);
    }
    match arguments.command {
        Some(Command::Audit {
            command: AuditCommand::Verify,
        }) => std::process::exit(audit_verify(&settings).await?),
        Some(Command::Keys(command)) => return run_keys_command(command, &settings).await,
        Some(Command::Init {
            county_code,
            county_name,
            admin_username,
            admin_name,
            password_file,
        }) => {
            let request = fieldsync_server::setup::InitRequest {
                county_code,
                county_name,
                admin_username,
                admin_display_name: admin_name,
                password_file,
            };
            if let Err(error) = run_init(&settings, request).await {
                eprintln!("{error:#}");
                std::process::exit(EXIT_SETUP_REFUSED);
            }
            return Ok(());
        }
        Some(Command::Backup {
            destination,
            with_keys,
        }) => std::process::exit(backup::run_backup(settings, destination, with_keys).await?),
        Some(Command::Restore { source }) => {
            backup::run_restore(settings, source).await?;
            return Ok(());
        }
        None => {}
    }
    // Serving needs an initialised folder (or the demo, which seeds an empty one); checked
    // before anything is created so a mistyped --data-dir leaves nothing behind.
    if !arguments.demo
        && let Err(refusal) = fieldsync_server::setup::require_database(&settings)
    {
        // What to run, in one message (never with a backtrace: it is advice, not a crash).
        eprintln!("{refusal}");
        std::process::exit(EXIT_SETUP_REFUSED);
    }
    if let Some(listen) = arguments.listen {
        settings.listen_addr = listen;
    }
    if let Some(cert) = arguments.tls_cert {
        settings.tls_cert_file = Some(cert);
    }
    if let Some(key) = arguments.tls_key {
        settings.tls_key_file = Some(key);
    }
    // A bad certificate or key stops start-up here, with the file named, before anything
    // is bound or opened.
    let tls_enabled = fieldsync_server::tls::server_config(&settings)?.is_some();
    let scheme = if tls_enabled { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(settings.listen_addr).await?;
    let address = listener.local_addr()?;
    let metrics_listener =
        fieldsync_server::monitoring::bind_metrics_listener(&settings.metrics).await?;
    if let Some(warning) = fieldsync_server::tls::plain_text_warning(address, tls_enabled) {
        eprintln!("{warning}");
    }
    // The listener answers at once (health NOT_SERVING) while the storage opens, migrates
    // and (with --demo) is seeded; the address is printed once everything is served.
    let demo = arguments.demo;
    let opening = {
        let settings = settings.clone();
        async move {
            let data_dir = settings.data_dir.clone();
            let state = fieldsync_server::open_state(settings.clone()).await?;
            if !demo {
                fieldsync_server::setup::require_accounts(state.store.as_ref(), &settings).await?;
            }
            if demo
                && demo::seed_demo_if_empty(state.store.as_ref())
                    .await
                    .map_err(|error| ServerError::Setup(format!("demo county: {error}")))?
                    .is_some()
            {
                println!(
                    "已生成示范县数据 (demo county seeded) in {}",
                    data_dir.display()
                );
            }
            Ok(state)
        }
    };
    let metrics_address = metrics_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    fieldsync_server::serve_when_open(
        listener,
        metrics_listener,
        &settings,
        opening,
        move |_| {
            if demo {
                print_demo_banner(scheme, address);
            }
            if let Some(metrics) = metrics_address {
                println!("监控 metrics: http://{metrics}/metrics");
            }
            println!("控制台 console: {scheme}://{address}/   gRPC: {scheme}://{address}");
        },
        fieldsync_server::termination_signal(),
    )
    .await?;
    Ok(())
}

/// Why `command` does not run against PostgreSQL: these commands work on the embedded
/// data folder, and PostgreSQL has its own tools for the same jobs.
fn refusal_on_postgres(command: Option<&Command>) -> Option<&'static str> {
    match command? {
        Command::Backup { .. } | Command::Restore { .. } => Some(
            "database_url 指向 PostgreSQL：请用 pg_dump / pg_restore 备份数据库，照片在对象存储中另行备份 \
             (with PostgreSQL, back up the database with pg_dump and the photos in the object store; \
             `backup` and `restore` copy the embedded SQLite folder only)",
        ),
        Command::Keys(KeysCommand::RotatePii) => Some(
            "database_url 指向 PostgreSQL：个人信息密钥轮换暂只支持内置 SQLite \
             (rotating the personal-data key is not available on PostgreSQL yet)",
        ),
        Command::Init { .. } | Command::Audit { .. } => None,
    }
}

/// `fieldsync-server audit verify`: check every record of the chain; the exit code.
async fn audit_verify(settings: &Settings) -> anyhow::Result<i32> {
    use fieldsync_server::audit::{self, VerifyScope};

    if fieldsync_server::uses_postgres(settings) {
        // A PostgreSQL chain was signed from its first record: no legacy records.
        let state = fieldsync_server::open_state(settings.clone()).await?;
        let outcome = audit::verify_chain(
            state.store.as_ref(),
            std::slice::from_ref(&state.audit_key),
            0,
            VerifyScope::Full,
        )
        .await?;
        return Ok(report_verification(outcome));
    }
    let database = settings.sqlite_path();
    if !database.is_file() {
        anyhow::bail!("no database at {}", database.display());
    }
    let key_dir = settings.key_dir();
    let legacy_note = audit::read_legacy_note(&key_dir)?;
    let key_path = fieldsync_server::keys::key_path(&key_dir, audit::AUDIT_KEY_NAME);
    let (keys, legacy_records) = if key_path.exists() {
        // A key with no note: the server wrote no legacy records, so none are allowed.
        let key = fieldsync_server::keys::load(&key_dir, audit::AUDIT_KEY_NAME)?;
        (vec![key], legacy_note.unwrap_or(0))
    } else if legacy_note.is_none() {
        // A server that never ran with a key: the chain is all legacy SHA-256.
        println!(
            "注意：{} 中没有审计密钥，按未签名的旧链校验 (no audit key in {}: checking the legacy unkeyed chain)",
            key_dir.display(),
            key_dir.display()
        );
        (Vec::new(), i64::MAX)
    } else {
        anyhow::bail!(
            "审计密钥缺失 (audit key missing): {} (pass --key-dir)",
            key_path.display()
        );
    };
    // Verification never reads sealed values, but the store opens with the personal-data
    // keys; a folder without them is the wrong folder, not one to create keys in.
    let pii = fieldsync_server::store::sealed::PiiCipher::load(&key_dir)?;
    let store = fieldsync_server::store::SqliteStore::open(&database, pii)?;
    let outcome = audit::verify_chain(&store, &keys, legacy_records, VerifyScope::Full).await?;
    Ok(report_verification(outcome))
}

/// Print the outcome of a chain verification; the exit code.
fn report_verification(outcome: Result<u64, fieldsync_server::audit::ChainBreak>) -> i32 {
    match outcome {
        Ok(verified) => {
            println!(
                "审计日志校验通过：{verified} 条记录 (audit chain OK: {verified} records verified)"
            );
            0
        }
        Err(chain_break) => {
            eprintln!(
                "审计日志校验失败 (audit chain BROKEN) at record {}: {}",
                chain_break.audit_id, chain_break.problem
            );
            EXIT_CHAIN_BROKEN
        }
    }
}

/// `fieldsync-server init`: the one-time password goes to the terminal only (println, not
/// tracing, so no log file receives it).
async fn run_init(
    settings: &Settings,
    request: fieldsync_server::setup::InitRequest,
) -> anyhow::Result<()> {
    let report = fieldsync_server::setup::init(settings, request).await?;
    println!(
        "已初始化 (initialised): 数据库 database {}",
        report.database.display()
    );
    println!(
        "密钥目录 key folder: {} (备份时须一并妥善保管 / back it up separately and keep it safe)",
        report.key_dir.display()
    );
    match report.generated_password {
        Some(password) => println!(
            "首个县级管理员 first administrator: {}  一次性密码 one-time password: {password}\n首次登录后须修改密码 (must be changed at first login); 此密码不会再次显示 (shown only once).",
            report.admin_username
        ),
        None => println!(
            "首个县级管理员 first administrator: {} (密码取自文件 password from the file; \
             首次登录后须修改 must be changed at first login)",
            report.admin_username
        ),
    }
    println!(
        "启动服务 start serving: fieldsync-server --data-dir {}",
        settings.data_dir.display()
    );
    Ok(())
}

/// `fieldsync-server keys ...`.
async fn run_keys_command(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        KeysCommand::RotatePii => {
            let report = fieldsync_server::pii_rotation::rotate_pii_key(settings).await?;
            println!(
                "个人信息密钥已轮换 (personal-data key rotated): {} -> {}; {} rows resealed; \
                 retired key kept in {}",
                report.retired_key_id,
                report.new_key_id,
                report.rows_resealed,
                settings.key_dir().display()
            );
            Ok(())
        }
    }
}

fn print_demo_banner(scheme: &str, address: SocketAddr) {
    println!();
    println!(
        "示范账号 demo logins (password for all: {}):",
        demo::DEMO_PASSWORD
    );
    let logins = demo::demo_logins();
    // The supervisors, the admin and the tour cadre by name; the other cadres as a range, so
    // the banner fits on one screen.
    let (named, other_cadres): (Vec<_>, Vec<_>) = logins.iter().partition(|login| {
        !login.username.starts_with("cadre") || login.username == demo::DEMO_TOUR_CADRE
    });
    for login in named {
        println!(
            "  {:<12} {:<10} {}",
            login.username, login.role_label, login.display_name
        );
    }
    if let (Some(first), Some(last)) = (other_cadres.first(), other_cadres.last()) {
        println!(
            "  {} … {}  帮扶干部 ({} more cadres)",
            first.username,
            last.username,
            other_cadres.len()
        );
    }
    println!();
    println!("打开控制台 open the console: {scheme}://{address}/console/login");
}
