//! `fieldsync`: the field-app stand-in. Each subcommand is one screen of the phone app,
//! driven through the `fieldsync-client` library exactly as the real app would drive it.
//! Output is for people, with Chinese labels next to the English ones.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fieldsync_client::{
    Client, ClientError, IncomeState, LinkOptions, LocalIncome, NewVisit, SyncReport, VisitState,
    format_fen, visit_mode_label,
};
use fieldsync_model::CodeList;
use fieldsync_model::codes::{
    Crs, Disability, Health, LabourCapacity, LocationProvider, Relation, Schooling, Sex,
    VisitExceptionReason, VisitMode, VisitType,
};
use fieldsync_model::household::Member;
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::register::FieldTarget;
use fieldsync_model::visit::{CheckResult, GpsFix, WellbeingCheck};
use time::{Duration, OffsetDateTime};

/// fieldsync 帮扶走访 field app (command-line stand-in for the phone app).
#[derive(Debug, Parser)]
#[command(name = "fieldsync", version, about)]
struct Cli {
    /// Where this "phone" keeps its database and photos.
    #[arg(long, global = true, default_value = "./fieldsync-phone")]
    data_dir: PathBuf,
    /// The fieldsync server.
    #[arg(
        long,
        global = true,
        env = "FIELDSYNC_SERVER",
        default_value = "http://127.0.0.1:7700"
    )]
    server: String,
    /// Extra CA certificate (PEM) to trust for https:// besides the system roots, e.g. the
    /// county's own CA.
    #[arg(long, global = true, env = "FIELDSYNC_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Allow plain http:// to a server that is not on this device. Passwords and personal
    /// data then cross the network unencrypted: a trusted test network only.
    #[arg(long, global = true, env = "FIELDSYNC_ALLOW_INSECURE_HTTP")]
    allow_insecure_http: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 登录 Log in (the token is bound to this device).
    Login {
        username: String,
        /// Password; or set FIELDSYNC_PASSWORD.
        #[arg(long, env = "FIELDSYNC_PASSWORD", hide_env_values = true)]
        password: String,
        /// The phone's model to report (shown to supervisors, e.g. on 冲突记录); kept for
        /// later logins.
        #[arg(long)]
        device_model: Option<String>,
    },
    /// 退出登录 Log out: end the session on the server and forget it here. Unsent records
    /// stay on this device.
    Logout,
    /// 修改密码 Change your password. Reads the current password from FIELDSYNC_PASSWORD
    /// and the new one from FIELDSYNC_NEW_PASSWORD, or asks for them on the terminal; never
    /// from the command line, where other users could see them. Your other devices are
    /// logged out.
    Password,
    /// 帮扶对象 List your paired households (from the last sync).
    Households,
    /// 走访 Record or fix a visit.
    #[command(subcommand)]
    Visit(VisitCommand),
    /// 走访记录 List visits on this phone with their review state.
    Visits,
    /// 同步 Push recorded visits, upload photos, download changes.
    Sync {
        /// On a failure that waiting can cure, back off and try again, up to N syncs.
        #[arg(long, default_value_t = 1)]
        retry: u32,
    },
    /// 户卡 Show or edit a household card (edits work offline).
    #[command(subcommand)]
    Household(HouseholdCommand),
    /// 成员 Add, change or remove a household member (works offline).
    #[command(subcommand)]
    Member(MemberCommand),
    /// 季登记 Register a household's quarterly income, or list what this phone registered
    /// (works offline).
    #[command(subcommand)]
    Income(IncomeCommand),
    /// 状态 Show unsent records, pending uploads and the last sync.
    Status,
    /// 待整改 Returned visits to fix.
    Tasks,
}

#[derive(Debug, Subcommand)]
enum HouseholdCommand {
    /// 查看 The card with its members (ID numbers masked).
    Show {
        /// Household id or a unique prefix of it.
        household: String,
    },
    /// 修改 Set one household field, e.g. `phone 13900000000` or `attribute 2`.
    Set {
        household: String,
        /// Field name: head_name, phone, address, attribute, main_cause, secondary_causes,
        /// housing_danger_level, location.
        field: String,
        /// JSON (numbers, true/false, [..], {..}, null) or plain text.
        value: String,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// 新增成员 Add a member.
    Add {
        household: String,
        /// 姓名.
        #[arg(long)]
        name: String,
        /// 与户主关系 relation code (national list; 99 其他 other).
        #[arg(long, default_value_t = 99)]
        relation: i32,
        /// 性别 1 male, 2 female.
        #[arg(long, default_value_t = 1)]
        sex: i32,
        /// YYYY-MM-DD.
        #[arg(long, default_value = "")]
        birth_date: String,
        /// 18-digit 身份证号.
        #[arg(long, default_value = "")]
        id_number: String,
    },
    /// 修改成员 Set one member field, e.g. `health 2`.
    Set {
        household: String,
        member_id: String,
        field: String,
        /// JSON or plain text.
        value: String,
    },
    /// 移除成员 Remove a member (a tombstone; the server keeps the history).
    Remove {
        household: String,
        member_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum IncomeCommand {
    /// 登记 Register one quarter (again to correct it: the latest registration counts).
    /// Amounts in yuan with at most 2 decimals, e.g. 3200.50 (金额单位元, 最多两位小数).
    Register(RegisterIncomeArgs),
    /// 登记记录 Registrations made on this phone and whether the server has them.
    List {
        /// Household id or a unique prefix of it; all households when left out.
        household: Option<String>,
    },
}

#[derive(Debug, Args)]
struct RegisterIncomeArgs {
    /// Household id or a unique prefix of it.
    household: String,
    /// 年度, e.g. 2026.
    #[arg(long)]
    year: i32,
    /// 季度 1–4.
    #[arg(long)]
    quarter: u32,
    /// 工资性收入 wages (yuan).
    #[arg(long, default_value = "0", value_parser = yuan_arg, allow_hyphen_values = true)]
    wages: i64,
    /// 生产经营性收入 production/business income, gross (yuan).
    #[arg(long, default_value = "0", value_parser = yuan_arg, allow_hyphen_values = true)]
    production: i64,
    /// 财产性收入 property income: rent, dividends, interest (yuan).
    #[arg(long, default_value = "0", value_parser = yuan_arg, allow_hyphen_values = true)]
    property: i64,
    /// 转移性收入 transfer income: 低保, pensions, subsidies, remittances (yuan).
    #[arg(long, default_value = "0", value_parser = yuan_arg, allow_hyphen_values = true)]
    transfer: i64,
    /// 生产经营性支出 production/business costs: seed, feed, fertiliser (yuan).
    #[arg(long, default_value = "0", value_parser = yuan_arg, allow_hyphen_values = true)]
    production_cost: i64,
    /// 更正: replace the registration already in force for this quarter (this phone's or
    /// another device's); without it, a registered quarter is refused.
    #[arg(long)]
    correct: bool,
}

/// clap parser of a yuan amount: exact fen from the decimal text.
fn yuan_arg(text: &str) -> Result<i64, fieldsync_client::YuanError> {
    fieldsync_client::parse_yuan(text)
}

#[derive(Debug, Subcommand)]
enum VisitCommand {
    /// 新增走访 Record a visit (works offline).
    New(Box<NewVisitArgs>),
    /// 整改 Correct a returned visit (or amend a draft) and submit it again: change any
    /// field a return reason names, remove or replace photos.
    Fix(Box<FixVisitArgs>),
    /// 查看 One visit with every field, its checklist and its photos (numbered).
    Show {
        /// Visit id or a unique prefix of it.
        visit_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    InPerson,
    Phone,
    WechatVideo,
    GroupMeeting,
    Proxy,
}

impl From<ModeArg> for VisitMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::InPerson => Self::InPerson,
            ModeArg::Phone => Self::Phone,
            ModeArg::WechatVideo => Self::WechatVideo,
            ModeArg::GroupMeeting => Self::GroupMeeting,
            ModeArg::Proxy => Self::Proxy,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExceptionReasonArg {
    WorkingAway,
    Epidemic,
    NobodyHome,
    Disaster,
    Other,
}

impl From<ExceptionReasonArg> for VisitExceptionReason {
    fn from(reason: ExceptionReasonArg) -> Self {
        match reason {
            ExceptionReasonArg::WorkingAway => Self::WorkingAway,
            ExceptionReasonArg::Epidemic => Self::Epidemic,
            ExceptionReasonArg::NobodyHome => Self::NobodyHome,
            ExceptionReasonArg::Disaster => Self::Disaster,
            ExceptionReasonArg::Other => Self::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProviderArg {
    Gps,
    Network,
    Fused,
}

impl From<ProviderArg> for LocationProvider {
    fn from(provider: ProviderArg) -> Self {
        match provider {
            ProviderArg::Gps => Self::Gps,
            ProviderArg::Network => Self::Network,
            ProviderArg::Fused => Self::Fused,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VisitTypeArg {
    /// 日常走访.
    Routine,
    /// 收入登记.
    IncomeRegistration,
    /// 政策宣讲.
    PolicyBriefing,
    /// 慰问.
    Condolence,
    /// 识别核查.
    IdentificationCheck,
    /// 退出核查.
    ExitCheck,
    /// 监测核查.
    MonitoringCheck,
    /// 回访抽查.
    SpotCheck,
}

impl From<VisitTypeArg> for VisitType {
    fn from(visit_type: VisitTypeArg) -> Self {
        match visit_type {
            VisitTypeArg::Routine => Self::Routine,
            VisitTypeArg::IncomeRegistration => Self::IncomeRegistration,
            VisitTypeArg::PolicyBriefing => Self::PolicyBriefing,
            VisitTypeArg::Condolence => Self::Condolence,
            VisitTypeArg::IdentificationCheck => Self::IdentificationCheck,
            VisitTypeArg::ExitCheck => Self::ExitCheck,
            VisitTypeArg::MonitoringCheck => Self::MonitoringCheck,
            VisitTypeArg::SpotCheck => Self::SpotCheck,
        }
    }
}

/// One 两不愁三保障 + 饮水安全 item as typed: `food=ok`, `housing=fail:危房C级`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckArg {
    item: WellbeingItem,
    result: CheckResult,
    note: Option<String>,
}

/// The six items of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WellbeingItem {
    Food,
    Clothing,
    Education,
    Medical,
    Housing,
    Water,
}

impl WellbeingItem {
    /// Names accepted on the command line (English short and field names, Chinese).
    const NAMES: [(&'static str, Self); 18] = [
        ("food", Self::Food),
        ("clothing", Self::Clothing),
        ("education", Self::Education),
        ("compulsory_education", Self::Education),
        ("medical", Self::Medical),
        ("basic_medical", Self::Medical),
        ("housing", Self::Housing),
        ("housing_safety", Self::Housing),
        ("water", Self::Water),
        ("drinking_water", Self::Water),
        ("吃", Self::Food),
        ("穿", Self::Clothing),
        ("教育", Self::Education),
        ("医疗", Self::Medical),
        ("住房", Self::Housing),
        ("饮水", Self::Water),
        ("不愁吃", Self::Food),
        ("不愁穿", Self::Clothing),
    ];

    fn label_zh(self) -> &'static str {
        match self {
            Self::Food => "不愁吃",
            Self::Clothing => "不愁穿",
            Self::Education => "义务教育有保障",
            Self::Medical => "基本医疗有保障",
            Self::Housing => "住房安全有保障",
            Self::Water => "饮水安全有保障",
        }
    }

    fn slot(self, check: &mut WellbeingCheck) -> &mut CheckResult {
        match self {
            Self::Food => &mut check.food,
            Self::Clothing => &mut check.clothing,
            Self::Education => &mut check.compulsory_education,
            Self::Medical => &mut check.basic_medical,
            Self::Housing => &mut check.housing_safety,
            Self::Water => &mut check.drinking_water,
        }
    }
}

/// clap parser of `--check ITEM=RESULT[:NOTE]`.
fn check_arg(text: &str) -> Result<CheckArg, String> {
    let (item, rest) = text.split_once('=').ok_or_else(|| {
        format!("应为 项目=结果[:说明] expected ITEM=ok|fail[:NOTE], e.g. housing=fail:危房C级; got {text:?}")
    })?;
    let item = WellbeingItem::NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(item.trim()))
        .map(|(_, item)| *item)
        .ok_or_else(|| {
            format!(
                "未知核查项 unknown item {item:?}: food, clothing, education, medical, housing, water"
            )
        })?;
    let (result, note) = match rest.split_once(':') {
        Some((result, note)) => (result, Some(note.trim().to_owned())),
        None => (rest, None),
    };
    let result = match result.trim().to_ascii_lowercase().as_str() {
        "ok" | "pass" | "达标" => CheckResult::Pass,
        "fail" | "不达标" => CheckResult::Fail,
        "unchecked" | "not-checked" | "未核查" => CheckResult::NotChecked,
        other => {
            return Err(format!(
                "未知结果 unknown result {other:?}: ok (达标), fail (不达标) or unchecked (未核查)"
            ));
        }
    };
    Ok(CheckArg {
        item,
        result,
        note: note.filter(|note| !note.is_empty()),
    })
}

/// clap parser of a Beijing-time `YYYY-MM-DD HH:MM`.
fn beijing_time_arg(text: &str) -> Result<OffsetDateTime, String> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(text.trim(), format)
        .map(|local| local.assume_offset(fieldsync_model::time_util::BEIJING))
        .map_err(|_| format!("应为北京时间 expected Beijing time YYYY-MM-DD HH:MM, got {text:?}"))
}

/// The parts of the visit form that `visit new` and `visit fix` share. In `visit fix` a
/// flag left out keeps the returned revision's value.
#[derive(Debug, Args)]
struct VisitFormArgs {
    /// 非入户原因 (required unless the mode is in-person).
    #[arg(long, value_enum)]
    exception_reason: Option<ExceptionReasonArg>,
    /// 走访类型 (new visits: routine when left out).
    #[arg(long = "type", value_enum)]
    visit_type: Option<VisitTypeArg>,
    /// Latitude of the GPS fix (WGS-84).
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude of the GPS fix (WGS-84).
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// Horizontal accuracy of the fix in metres (10 when left out).
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    accuracy: Option<f64>,
    /// 定位来源.
    #[arg(long, value_enum, default_value = "gps")]
    provider: ProviderArg,
    /// The OS reported a mock location.
    #[arg(long)]
    mock: bool,
    /// 生产生活情况.
    #[arg(long)]
    situation: Option<String>,
    /// 帮扶计划实施情况.
    #[arg(long)]
    plan_progress: Option<String>,
    /// 存在问题.
    #[arg(long)]
    problems: Option<String>,
    /// 帮扶措施.
    #[arg(long)]
    actions: Option<String>,
    /// 农户需求.
    #[arg(long)]
    needs: Option<String>,
    /// 宣讲政策 (repeatable; in `visit fix` the list given replaces the old one).
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// 两不愁三保障 + 饮水安全 item (repeatable): ITEM=ok|fail|unchecked[:NOTE], items food,
    /// clothing, education, medical, housing, water; e.g. --check food=ok
    /// --check housing=fail:"危房C级". Items left out are 未核查 (not checked).
    #[arg(long = "check", value_parser = check_arg)]
    checks: Vec<CheckArg>,
    /// 核查说明: a note on the checklist besides the items' own notes.
    #[arg(long)]
    check_note: Option<String>,
    /// 入户时间, Beijing time YYYY-MM-DD HH:MM (new visits: check-out − duration).
    #[arg(long, value_parser = beijing_time_arg)]
    checkin: Option<OffsetDateTime>,
    /// 离开时间, Beijing time YYYY-MM-DD HH:MM (new visits: now).
    #[arg(long, value_parser = beijing_time_arg)]
    checkout: Option<OffsetDateTime>,
    /// Minutes spent at the household: check-in = check-out − duration (new visits: 30).
    #[arg(long, allow_negative_numbers = true)]
    duration_min: Option<i64>,
    /// Photo file (repeatable); checked and copied into this phone's storage.
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct NewVisitArgs {
    /// Household id or a unique prefix of it.
    household: String,
    /// 走访方式.
    #[arg(long, value_enum)]
    mode: ModeArg,
    #[command(flatten)]
    form: VisitFormArgs,
}

#[derive(Debug, Args)]
struct FixVisitArgs {
    /// Visit id or a unique prefix of it.
    visit_id: String,
    /// 走访方式.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    #[command(flatten)]
    form: VisitFormArgs,
    /// Remove a photo: its number in `visit show` (1, 2, ...) or its id (repeatable).
    #[arg(long = "remove-photo")]
    remove_photos: Vec<String>,
    /// Replace a photo: NUMBER=FILE or ID=FILE (repeatable); the new photo takes its place.
    #[arg(long = "replace-photo")]
    replace_photos: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("错误 error: {error}");
            if matches!(error, ClientError::SyncInProgress) {
                eprintln!("稍后再试 try again when the running sync has finished");
            }
            if error.is_unavailable() {
                eprintln!(
                    "数据已保存在本机, 下次同步时上传 (data is safe on this device; run `fieldsync sync` later)"
                );
            }
            if matches!(error, ClientError::SignedOut { .. }) {
                eprintln!("请重新登录 run `fieldsync login` again");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let options = LinkOptions {
        ca_file: cli.ca_file,
        allow_insecure_http: cli.allow_insecure_http,
    };
    let client = Client::open_with_options(&cli.data_dir, &cli.server, options)?;
    match cli.command {
        Command::Login {
            username,
            password,
            device_model,
        } => {
            if let Some(model) = device_model {
                client.set_device_model(&model)?;
            }
            let info = client.login(&username, &password).await?;
            println!(
                "登录成功 logged in: {} ({})",
                info.display_name, info.username
            );
            if let Some(role) = info.role {
                println!("角色 role:      {} {}", role.label_zh(), role.as_str());
            }
            println!("设备 device:    {}", info.device_id);
            if info.must_change_password {
                println!(
                    "请先修改一次性密码 change the one-time password first: `fieldsync password`"
                );
            }
            println!("下一步 next: `fieldsync sync` 下载帮扶对象 to download your households");
        }
        Command::Logout => {
            if client.logout().await? {
                println!("已退出登录 logged out");
            } else {
                println!(
                    "已在本机退出登录；服务器暂时无法连接 logged out on this device (the server could not be reached; the session expires by itself)"
                );
            }
            println!("未上传的记录仍保存在本机 unsent records stay on this device");
        }
        Command::Password => {
            let old_password = secret_input("FIELDSYNC_PASSWORD", "原密码 current password: ")?;
            let new_password = secret_input(
                "FIELDSYNC_NEW_PASSWORD",
                "新密码 new password (至少8个字符): ",
            )?;
            let ended = client.change_password(&old_password, &new_password).await?;
            println!("密码已修改 password changed; 已注销其他 {ended} 个设备 other sessions ended");
        }
        Command::Households => print_households(&client)?,
        Command::Visit(VisitCommand::New(args)) => record_visit(&client, *args)?,
        Command::Visit(VisitCommand::Fix(args)) => fix_visit(&client, *args)?,
        Command::Visit(VisitCommand::Show { visit_id }) => {
            let visit_id = client.resolve_visit_id(&visit_id)?;
            print!("{}", visit_text(&client, &visit_id)?);
        }
        Command::Visits => print_visits(&client)?,
        Command::Sync { retry } => {
            let report = if retry > 1 {
                client
                    .sync_until_quiet(retry, &fieldsync_client::TokioSleeper)
                    .await?
            } else {
                client.sync().await?
            };
            print_sync_report(&report);
        }
        Command::Household(command) => household_command(&client, command)?,
        Command::Member(command) => member_command(&client, command)?,
        Command::Income(IncomeCommand::Register(args)) => register_income(&client, args)?,
        Command::Income(IncomeCommand::List { household }) => {
            let household_id = match household {
                None => None,
                Some(text) => Some(match client.resolve_household_id(&text) {
                    Ok(household_id) => household_id,
                    // A household reassigned away is gone from the replica; its
                    // registrations are still listed by full id.
                    Err(
                        ClientError::UnknownHousehold { .. }
                        | ClientError::HouseholdsNotSynced { .. },
                    ) => text.trim().to_owned(),
                    Err(error) => return Err(error),
                }),
            };
            print!(
                "{}",
                income_list_text(
                    &client.income_registrations(household_id.as_deref())?,
                    &client.server_income_registrations(household_id.as_deref())?
                )
            );
        }
        Command::Status => print_status(&client)?,
        Command::Tasks => print_tasks(&client)?,
    }
    Ok(())
}

/// A secret from the environment variable `variable`, or else one line read from standard
/// input after `prompt` (on standard error). Secrets never come from argv, which other users
/// of the machine can read.
fn secret_input(variable: &str, prompt: &str) -> Result<String, ClientError> {
    if let Ok(value) = std::env::var(variable)
        && !value.is_empty()
    {
        return Ok(value);
    }
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|error| ClientError::Io {
            path: PathBuf::from("<stdin>"),
            source: error,
        })?;
    let value = line.trim_end_matches(['\r', '\n']).to_owned();
    if value.is_empty() {
        return Err(ClientError::Invalid {
            field: variable.to_ascii_lowercase(),
            message: format!("set {variable} or type it when asked"),
        });
    }
    Ok(value)
}

/// A value typed on the command line: JSON when it parses (numbers, booleans, lists,
/// objects, null), plain text otherwise, so `phone 13900000000` stays a string.
fn parse_value(field: &str, text: &str) -> serde_json::Value {
    let text_fields = [
        "head_name",
        "phone",
        "address",
        "name",
        "birth_date",
        "id_number",
    ];
    if text_fields.contains(&field) {
        return serde_json::Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

fn household_command(client: &Client, command: HouseholdCommand) -> Result<(), ClientError> {
    match command {
        HouseholdCommand::Show { household } => {
            let household_id = client.resolve_household_id(&household)?;
            print_card(client, &household_id)
        }
        HouseholdCommand::Set {
            household,
            field,
            value,
        } => {
            let household_id = client.resolve_household_id(&household)?;
            let value = parse_value(&field, &value);
            client.edit_household_field(&household_id, FieldTarget::Household, &field, value)?;
            println!("已修改 saved: {household_id} {field}");
            println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
            Ok(())
        }
    }
}

fn member_command(client: &Client, command: MemberCommand) -> Result<(), ClientError> {
    match command {
        MemberCommand::Add {
            household,
            name,
            relation,
            sex,
            birth_date,
            id_number,
        } => {
            let household_id = client.resolve_household_id(&household)?;
            let code_error = |field: &str, code: i32| ClientError::Invalid {
                field: field.to_owned(),
                message: format!("{code} is not a known code"),
            };
            let member = Member {
                member_id: String::new(),
                name,
                relation: Relation::from_code(relation)
                    .ok_or_else(|| code_error("relation", relation))?,
                sex: Sex::from_code(sex).ok_or_else(|| code_error("sex", sex))?,
                birth_date,
                id_number,
                health: Health::Healthy,
                labour_capacity: LabourCapacity::Ordinary,
                schooling: Schooling::NotInSchool,
                disability: Disability::None,
                disability_grade: 0,
                has_medical_insurance: false,
                has_serious_illness_insurance: false,
                has_pension_insurance: false,
                removed: false,
            };
            let member_id = client.add_member(&household_id, member)?;
            println!("已新增成员 member added: {member_id}");
        }
        MemberCommand::Set {
            household,
            member_id,
            field,
            value,
        } => {
            let household_id = client.resolve_household_id(&household)?;
            let value = parse_value(&field, &value);
            client.edit_household_field(
                &household_id,
                FieldTarget::Member(member_id.clone()),
                &field,
                value,
            )?;
            println!("已修改 saved: {member_id} {field}");
        }
        MemberCommand::Remove {
            household,
            member_id,
        } => {
            let household_id = client.resolve_household_id(&household)?;
            client.remove_member(&household_id, &member_id)?;
            println!("已移除成员 member removed: {member_id}");
        }
    }
    println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
    Ok(())
}

fn print_card(client: &Client, household_id: &str) -> Result<(), ClientError> {
    let Some(card) = client.household(household_id)? else {
        return Err(ClientError::NotFound(format!("household {household_id}")));
    };
    println!("户 household:   {}", card.household_id);
    println!("户主 head:      {}", card.head_name);
    println!("村 village:     {}", card.village_name);
    println!("住址 address:   {}", card.address);
    println!("电话 phone:     {}", card.phone);
    println!(
        "属性 attribute: {} ({})",
        card.attribute.label_zh(),
        card.attribute.code()
    );
    println!(
        "致贫原因 cause: {} ({})",
        card.main_cause.label_zh(),
        card.main_cause.code()
    );
    println!("成员 members:");
    for member in &card.members {
        println!(
            "  {} {:<8} {:<6} {}  {}  身份证 {}  健康 {}{}",
            member.member_id,
            member.name,
            member.relation.label_zh(),
            member.sex.label_zh(),
            if member.birth_date.is_empty() {
                "-"
            } else {
                &member.birth_date
            },
            if member.id_number.is_empty() {
                "-".to_owned()
            } else {
                fieldsync_model::id_number::mask(&member.id_number)
            },
            member.health.label_zh(),
            if member.removed {
                "  [已移除 removed]"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn print_households(client: &Client) -> Result<(), ClientError> {
    let households = client.households()?;
    if households.is_empty() {
        println!("暂无帮扶对象 no households yet: run `fieldsync sync` first");
        return Ok(());
    }
    println!(
        "{:<38} {:<10} {:<12} {:>8}  {:<22} 本月入户 in-person this month",
        "户ID household", "户主 head", "村 village", "人口 size", "住址坐标 home (lat, lon)"
    );
    let mut visited = 0;
    for household in &households {
        if household.visited_in_person_this_month {
            visited += 1;
        }
        // The registered home location, so a field test can stand where the household is.
        let home = client
            .household(&household.household_id)?
            .and_then(|card| card.location)
            .map_or_else(
                || "-".to_owned(),
                |point| format!("{:.5}, {:.5}", point.lat, point.lon),
            );
        println!(
            "{:<38} {:<10} {:<12} {:>8}  {:<22} {}",
            household.household_id,
            household.head_name,
            household.village_name,
            household.member_count,
            home,
            if household.visited_in_person_this_month {
                "✓ 已走访 visited"
            } else {
                "✗ 未走访 not yet"
            }
        );
    }
    println!(
        "共 {} 户, 本月已入户 {} 户 ({} households, {} visited in person this month)",
        households.len(),
        visited,
        households.len(),
        visited
    );
    Ok(())
}

/// The fields of a visit form that `--...` flags set, borrowed from a `NewVisit` or a
/// `Visit`, so `visit new` and `visit fix` fill the form the same way.
struct FormFields<'a> {
    exception_reason: &'a mut Option<VisitExceptionReason>,
    visit_type: &'a mut VisitType,
    checkin_at: &'a mut OffsetDateTime,
    checkout_at: &'a mut OffsetDateTime,
    observed_situation: &'a mut String,
    plan_progress: &'a mut String,
    problems: &'a mut String,
    actions: &'a mut String,
    needs: &'a mut String,
    policies_explained: &'a mut Vec<String>,
    wellbeing: &'a mut WellbeingCheck,
    gps: &'a mut Option<GpsFix>,
}

/// The form's fields of a [`NewVisit`] or a stored `Visit` (they share the names).
macro_rules! form_fields_of {
    ($form:expr) => {
        FormFields {
            exception_reason: &mut $form.exception_reason,
            visit_type: &mut $form.visit_type,
            checkin_at: &mut $form.checkin_at,
            checkout_at: &mut $form.checkout_at,
            observed_situation: &mut $form.observed_situation,
            plan_progress: &mut $form.plan_progress,
            problems: &mut $form.problems,
            actions: &mut $form.actions,
            needs: &mut $form.needs,
            policies_explained: &mut $form.policies_explained,
            wellbeing: &mut $form.wellbeing,
            gps: &mut $form.gps,
        }
    };
}

/// Apply the flags that were given; the others keep the form's value.
fn apply_form_args(args: &VisitFormArgs, fields: FormFields<'_>, now: OffsetDateTime) {
    if let Some(reason) = args.exception_reason {
        *fields.exception_reason = Some(reason.into());
    }
    if let Some(visit_type) = args.visit_type {
        *fields.visit_type = visit_type.into();
    }
    for (flag, field) in [
        (&args.situation, fields.observed_situation),
        (&args.plan_progress, fields.plan_progress),
        (&args.problems, fields.problems),
        (&args.actions, fields.actions),
        (&args.needs, fields.needs),
    ] {
        if let Some(text) = flag {
            field.clone_from(text);
        }
    }
    if !args.policies.is_empty() {
        fields.policies_explained.clone_from(&args.policies);
    }
    let mut notes = Vec::new();
    for check in &args.checks {
        *check.item.slot(fields.wellbeing) = check.result;
        if let Some(note) = &check.note {
            notes.push(format!("{}：{note}", check.item.label_zh()));
        }
    }
    notes.extend(args.check_note.clone());
    if !notes.is_empty() {
        fields.wellbeing.note = notes.join("；");
    }
    if let (Some(lat), Some(lon)) = (args.lat, args.lon) {
        *fields.gps = Some(GpsFix {
            lat,
            lon,
            crs: Crs::Wgs84,
            accuracy_m: args.accuracy.unwrap_or(10.0),
            provider: Some(args.provider.into()),
            is_mock: args.mock,
            fix_time: Some(now),
        });
    }
    if let Some(checkout) = args.checkout {
        *fields.checkout_at = checkout;
    }
    if let Some(checkin) = args.checkin {
        *fields.checkin_at = checkin;
    }
    if let Some(minutes) = args.duration_min {
        *fields.checkin_at = *fields.checkout_at - Duration::minutes(minutes);
    }
}

fn check_duration_arg(args: &VisitFormArgs) -> Result<(), ClientError> {
    if args.duration_min.is_some_and(|minutes| minutes < 0) {
        return Err(ClientError::Invalid {
            field: "duration_min".into(),
            message: "走访时长不能为负 must not be negative".into(),
        });
    }
    Ok(())
}

fn record_visit(client: &Client, args: NewVisitArgs) -> Result<(), ClientError> {
    check_duration_arg(&args.form)?;
    let now = OffsetDateTime::now_utc();
    let checkout = args.form.checkout.unwrap_or(now);
    let mode: VisitMode = args.mode.into();
    let mut new_visit = NewVisit {
        photo_paths: args.form.photos.clone(),
        ..NewVisit::new(
            args.household.clone(),
            mode,
            checkout - Duration::minutes(30),
            checkout,
        )
    };
    apply_form_args(&args.form, form_fields_of!(new_visit), now);
    let photo_count = new_visit.photo_paths.len();
    let has_gps = new_visit.gps.is_some();
    // The core checks the household (id or prefix), the form and the photos before
    // anything is saved; its errors say what is wrong in both languages.
    let visit_id = client.record_visit(new_visit)?;
    let household_id = client
        .visit(&visit_id)?
        .map(|summary| summary.household_id)
        .unwrap_or_default();
    let head = client
        .household(&household_id)?
        .map(|household| household.head_name)
        .unwrap_or_default();
    println!("已保存走访 visit saved: {visit_id}");
    println!("  户 household: {household_id} {head}");
    println!("  方式 mode:    {}", visit_mode_label(mode));
    println!("  照片 photos:  {photo_count}");
    println!(
        "  定位 GPS:     {}",
        if has_gps { "有 yes" } else { "无 none" }
    );
    if mode == VisitMode::InPerson && (photo_count == 0 || !has_gps) {
        println!(
            "  提示 note: 入户走访应有照片和定位 (an in-person visit should have a photo and a GPS fix)"
        );
    }
    println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
    Ok(())
}

fn register_income(client: &Client, args: RegisterIncomeArgs) -> Result<(), ClientError> {
    let components = IncomeComponents {
        wage_fen: args.wages,
        business_gross_fen: args.production,
        property_fen: args.property,
        transfer_fen: args.transfer,
        business_cost_fen: args.production_cost,
    };
    let registration = if args.correct {
        client.correct_income(&args.household, args.year, args.quarter, components)?
    } else {
        client
            .register_income(&args.household, args.year, args.quarter, components)
            .inspect_err(|error| {
                if matches!(error, ClientError::IncomeAlreadyRegistered { .. }) {
                    eprintln!(
                        "提示 hint: 核实后加 --correct 更正该季度 (add --correct to replace it)"
                    );
                }
            })?
    };
    let head = client
        .household(&registration.household_id)?
        .map(|household| household.head_name)
        .unwrap_or_default();
    println!(
        "已保存收入登记 income saved: {}",
        registration.registration_id
    );
    println!(
        "  户 household:          {} {head}",
        registration.household_id
    );
    println!(
        "  期间 period:           {}年第{}季度 ({} Q{})",
        registration.year, registration.quarter, registration.year, registration.quarter
    );
    println!("  人口 household size:   {}", registration.household_size);
    for (label, fen) in [
        ("工资性收入 wages:      ", components.wage_fen),
        ("生产经营性收入 gross:  ", components.business_gross_fen),
        ("财产性收入 property:   ", components.property_fen),
        ("转移性收入 transfer:   ", components.transfer_fen),
        ("生产经营性支出 costs:  ", components.business_cost_fen),
    ] {
        println!("  {label}{:>14} 元", format_fen(fen));
    }
    println!(
        "  家庭纯收入 net:        {:>14} 元",
        format_fen(registration.net_fen)
    );
    println!(
        "  人均纯收入 per capita: {:>14} 元",
        format_fen(registration.per_capita_net_fen)
    );
    println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
    Ok(())
}

/// The `income list` listing: one line per registration made on this phone, the one in
/// force for its quarter marked (a later registration of the same quarter corrects an
/// earlier one; a refused one never counts); then the quarters in force on the server that
/// another device registered (the second helper's phone, this cadre's previous phone).
fn income_list_text(rows: &[LocalIncome], on_server: &[IncomeRegistration]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let line = |text: &mut String, registration: &IncomeRegistration, state: &str| {
        let _ = writeln!(
            text,
            "{:<38} {:<10} {:>14} {:>14}  {state}",
            registration.household_id,
            format!("{}Q{}", registration.year, registration.quarter),
            format_fen(registration.net_fen),
            format_fen(registration.per_capita_net_fen),
        );
    };
    let header = |text: &mut String| {
        let _ = writeln!(
            text,
            "{:<38} {:<10} {:>14} {:>14}  状态 state",
            "户ID household", "期间 period", "纯收入 net", "人均 per cap."
        );
    };
    if rows.is_empty() {
        text.push_str("本机暂无收入登记 no income registered on this phone\n");
    } else {
        header(&mut text);
    }
    let key = |registration: &IncomeRegistration| {
        (
            registration.household_id.clone(),
            registration.year,
            registration.quarter,
        )
    };
    for (index, row) in rows.iter().enumerate() {
        let corrected = row.state != IncomeState::Rejected
            && rows[index + 1..].iter().any(|later| {
                key(&later.registration) == key(&row.registration)
                    && later.state != IncomeState::Rejected
            });
        let mut state = format!("{} {}", row.state.label_zh(), row.state.as_str());
        if corrected {
            state.push_str(" (已更正 corrected later)");
        }
        // Sent, but the server's registration in force for the quarter is another one: a
        // registration from another device arrived later and replaced it.
        let replaced_elsewhere = !corrected
            && row.state == IncomeState::Sent
            && on_server.iter().any(|registration| {
                key(registration) == key(&row.registration)
                    && registration.registration_id != row.registration.registration_id
            });
        if replaced_elsewhere {
            state.push_str(" (已被其他设备的登记替换 replaced by another device's)");
        }
        if let Some((code, message)) = &row.rejection {
            state.push_str(&format!(" [{code}: {message}]"));
        }
        line(&mut text, &row.registration, &state);
    }
    let from_elsewhere: Vec<&IncomeRegistration> = on_server
        .iter()
        .filter(|registration| {
            !rows
                .iter()
                .any(|row| row.registration.registration_id == registration.registration_id)
        })
        .collect();
    if !from_elsewhere.is_empty() {
        text.push_str(
            "\n其他设备登记（截至上次同步）registered by another device, as of the last sync:\n",
        );
        header(&mut text);
        for registration in from_elsewhere {
            // A later registration of this phone for the quarter replaces it once it is sent.
            let replaced = rows.iter().any(|row| {
                key(&row.registration) == key(registration) && row.state == IncomeState::Unsent
            });
            let state = if replaced {
                "服务器已有 on the server (本机更正待上传 this phone's correction replaces it)"
            } else {
                "服务器已有 on the server"
            };
            line(&mut text, registration, state);
        }
    }
    text
}

/// A photo named on the command line: its number (1-based, as `visit show` lists them) or
/// its id (or a unique prefix of it).
fn resolve_photo(photo_ids: &[String], text: &str) -> Result<String, ClientError> {
    let text = text.trim();
    if let Ok(number) = text.parse::<usize>()
        && (1..=photo_ids.len()).contains(&number)
    {
        return Ok(photo_ids[number - 1].clone());
    }
    let matches: Vec<&String> = photo_ids.iter().filter(|id| id.starts_with(text)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(ClientError::Invalid {
            field: "photo".into(),
            message: format!(
                "照片 {text:?} 不是该走访的照片编号或ID not a photo number or id of this visit (see `fieldsync visit show`)"
            ),
        }),
    }
}

fn fix_visit(client: &Client, args: FixVisitArgs) -> Result<(), ClientError> {
    check_duration_arg(&args.form)?;
    let visit_id = client.resolve_visit_id(&args.visit_id)?;
    let previous = client
        .visit(&visit_id)?
        .and_then(|summary| summary.visit)
        .ok_or_else(|| {
            ClientError::NotAllowed(format!(
                "visit {visit_id} was not recorded on this device; its content is not here"
            ))
        })?;
    let removed = args
        .remove_photos
        .iter()
        .map(|text| resolve_photo(&previous.photo_ids, text))
        .collect::<Result<Vec<_>, _>>()?;
    let mut replaced = Vec::new();
    for text in &args.replace_photos {
        let (photo, file) = text.split_once('=').ok_or_else(|| ClientError::Invalid {
            field: "replace_photo".into(),
            message: format!("应为 编号=文件 expected NUMBER=FILE or ID=FILE, got {text:?}"),
        })?;
        replaced.push((
            resolve_photo(&previous.photo_ids, photo)?,
            PathBuf::from(file),
        ));
    }
    let mut photo_paths: Vec<PathBuf> = replaced.iter().map(|(_, file)| file.clone()).collect();
    photo_paths.extend(args.form.photos.iter().cloned());
    let now = OffsetDateTime::now_utc();
    let form = &args.form;
    let mode = args.mode;
    let revision = client.revise_visit_with(&visit_id, &photo_paths, |visit, new_photo_ids| {
        if let Some(mode) = mode {
            visit.mode = mode.into();
            if visit.mode == VisitMode::InPerson {
                visit.exception_reason = None;
            }
        }
        apply_form_args(form, form_fields_of!(visit), now);
        // Replacements take their photo's place; added photos go at the end.
        let (replacements, added) = new_photo_ids.split_at(replaced.len());
        for ((old_id, _), new_id) in replaced.iter().zip(replacements) {
            if let Some(slot) = visit.photo_ids.iter_mut().find(|id| *id == old_id) {
                slot.clone_from(new_id);
            }
        }
        visit.photo_ids.retain(|id| !removed.contains(id));
        visit.photo_ids.extend(added.iter().cloned());
    })?;
    println!("已重新提交 resubmitted: {visit_id} 第{revision}版 (revision {revision})");
    println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
    Ok(())
}

/// `visit show`: every field of the latest revision, the checklist item by item (未核查 shown
/// as not checked, never as fine) and the photos by number.
fn visit_text(client: &Client, visit_id: &str) -> Result<String, ClientError> {
    use std::fmt::Write as _;
    let summary = client
        .visit(visit_id)?
        .ok_or_else(|| ClientError::NotFound(format!("visit {visit_id}")))?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "走访 visit {} 第{}版 (revision {}) — {}",
        summary.visit_id,
        summary.revision,
        summary.revision,
        state_label(summary.state)
    );
    let _ = writeln!(
        text,
        "户 household:        {} {}",
        summary.household_id,
        summary.head_name.as_deref().unwrap_or("")
    );
    let Some(visit) = summary.visit else {
        let _ = writeln!(text, "(内容不在本机 content not recorded on this phone)");
        return Ok(text);
    };
    let _ = writeln!(
        text,
        "方式 mode:           {}",
        visit_mode_label(visit.mode)
    );
    if let Some(reason) = visit.exception_reason {
        let _ = writeln!(text, "非入户原因 reason:   {}", reason.label_zh());
    }
    let _ = writeln!(text, "类型 type:           {}", visit.visit_type.label_zh());
    let _ = writeln!(
        text,
        "时间 time:           {} – {}",
        fieldsync_model::time_util::beijing_minutes(visit.checkin_at),
        fieldsync_model::time_util::beijing_minutes(visit.checkout_at)
    );
    for (label, value) in [
        ("生产生活情况", &visit.observed_situation),
        ("帮扶计划实施情况", &visit.plan_progress),
        ("存在问题", &visit.problems),
        ("帮扶措施", &visit.actions),
        ("农户需求", &visit.needs),
    ] {
        if !value.is_empty() {
            let _ = writeln!(text, "{label}: {value}");
        }
    }
    if !visit.policies_explained.is_empty() {
        let _ = writeln!(
            text,
            "宣讲政策 policies:   {}",
            visit.policies_explained.join("、")
        );
    }
    let _ = writeln!(text, "两不愁三保障 checks:");
    for (label, result) in visit.wellbeing.items() {
        let shown = match result {
            CheckResult::Pass => "达标 ok",
            CheckResult::Fail => "不达标 fail",
            CheckResult::NotChecked => "未核查 not checked",
        };
        let _ = writeln!(text, "  {label}: {shown}");
    }
    if !visit.wellbeing.note.is_empty() {
        let _ = writeln!(text, "  说明 note: {}", visit.wellbeing.note);
    }
    match &visit.gps {
        Some(fix) => {
            let _ = writeln!(
                text,
                "定位 GPS:            {:.6}, {:.6} ±{} m{}",
                fix.lat,
                fix.lon,
                fix.accuracy_m,
                if fix.is_mock {
                    " (模拟定位 mock)"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(text, "定位 GPS:            无 none");
        }
    }
    let _ = writeln!(text, "照片 photos:         {}", visit.photo_ids.len());
    for (index, photo_id) in visit.photo_ids.iter().enumerate() {
        let _ = writeln!(text, "  照片{} {photo_id}", index + 1);
    }
    Ok(text)
}

fn state_label(state: VisitState) -> String {
    format!("{} {}", state.label_zh(), state.as_str())
}

fn print_visits(client: &Client) -> Result<(), ClientError> {
    let visits = client.visits()?;
    if visits.is_empty() {
        println!("暂无走访记录 no visits on this phone");
        return Ok(());
    }
    println!(
        "{:<38} {:>3} {:<10} {:<16} {:<18} 审核状态 state",
        "走访ID visit", "版", "户主 head", "方式 mode", "日期 date"
    );
    for summary in &visits {
        let (mode, date) = match &summary.visit {
            Some(visit) => (
                visit_mode_label(visit.mode),
                visit
                    .checkin_at
                    .to_offset(fieldsync_model::time_util::BEIJING)
                    .date()
                    .to_string(),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let mut state = state_label(summary.state);
        if summary.pending_mutations > 0 && summary.state != VisitState::Unsent {
            state.push_str(&format!(" (+{} 待上传 unsent)", summary.pending_mutations));
        }
        if let Some((code, message)) = &summary.rejection {
            state.push_str(&format!(" [{code}: {message}]"));
        }
        println!(
            "{:<38} {:>3} {:<10} {:<16} {:<18} {}",
            summary.visit_id,
            summary.revision,
            summary.head_name.as_deref().unwrap_or("-"),
            mode,
            date,
            state
        );
    }
    Ok(())
}

fn print_sync_report(report: &SyncReport) {
    println!("同步完成 sync complete");
    println!(
        "  上传记录 pushed:   {} 批 batches, {} 条已接收 applied, {} 条重复 duplicate",
        report.batches_pushed, report.mutations_applied, report.mutations_duplicate
    );
    println!(
        "  照片 photos:       {} 张已上传 uploaded ({} bytes), {} 张等待 waiting",
        report.uploads_completed, report.bytes_uploaded, report.uploads_waiting
    );
    println!(
        "  下载 pulled:       {} 户 households, {} 条审核状态 review statuses, {} 户移除 removed",
        report.households_pulled, report.visit_statuses_pulled, report.households_removed
    );
    if report.conflicts_recorded > 0 {
        println!(
            "  冲突 conflicts:    {} 条修改与其他设备的修改冲突，等待乡镇审核员处理 \
             (edits conflicting with another device's, waiting for the township supervisor)",
            report.conflicts_recorded
        );
    }
    if report.resets > 0 {
        println!(
            "  重新下载 re-downloaded the scope {} time(s)",
            report.resets
        );
    }
    for (sha256, error) in &report.upload_failures {
        println!("  照片上传失败 upload failed: {sha256}: {error}");
    }
    for rejected in &report.rejected {
        println!(
            "  被拒收 rejected: seq {} {} {}: {} {}",
            rejected.seq,
            rejected.kind.as_str(),
            rejected.subject_id,
            rejected.code,
            rejected.message
        );
    }
}

fn print_status(client: &Client) -> Result<(), ClientError> {
    let status = client.status()?;
    match &status.user {
        Some(user) => println!(
            "用户 user:            {} ({}){}",
            user.display_name,
            user.username,
            user.role
                .map(|role| format!(" {} {}", role.label_zh(), role.as_str()))
                .unwrap_or_default()
        ),
        None => println!("用户 user:            未登录 not logged in"),
    }
    match status.session {
        fieldsync_client::SessionState::LoggedIn => {}
        fieldsync_client::SessionState::LoggedOut => {
            println!("登录 session:         已退出 logged out (`fieldsync login`)")
        }
        fieldsync_client::SessionState::SignedOutOnServer(reason) => println!(
            "登录 session:         {}，请重新登录 signed out on the server ({})",
            reason.label_zh(),
            reason.as_str()
        ),
    }
    println!("设备 device:          {}", status.device_id);
    println!("服务器 server:        {}", status.server_url);
    println!(
        "待上传 unsent:        {} 条记录 mutations",
        status.unsent_mutations
    );
    println!("待传照片 uploads:     {} 张 photos", status.pending_uploads);
    println!("帮扶对象 households:  {}", status.households);
    println!(
        "上次同步 last sync:   {}",
        status
            .last_sync_at
            .map(fieldsync_model::time_util::beijing_minutes)
            .unwrap_or_else(|| "从未 never".to_owned())
    );
    if let Some(error) = &status.last_error {
        println!("上次错误 last error:  {error}");
    }
    if let Some(due) = status.next_sync_due {
        println!(
            "下次重试 next retry:  {} ({} 次连续失败 failures in a row)",
            fieldsync_model::time_util::beijing_minutes(due),
            status.consecutive_failures
        );
    }
    for item in &status.wedged {
        println!(
            "{} {}: seq {} {} {} — {} 次 attempts, since {}: {}",
            item.label_zh(),
            if item.rejected { "refused" } else { "stuck" },
            item.seq,
            item.kind.as_str(),
            item.subject_id,
            item.attempts,
            item.since
                .map(fieldsync_model::time_util::beijing_minutes)
                .unwrap_or_else(|| "-".to_owned()),
            item.error
        );
    }
    for item in &status.handover {
        println!(
            "{} hand over: seq {} {} 户 {} (household reassigned; kept on this phone, not sent)",
            fieldsync_client::HandoverItem::LABEL_ZH,
            item.seq,
            item.kind.as_str(),
            item.household_id
        );
    }
    for pending in &status.pending_conflicts {
        let head = client
            .household(&pending.household_id)?
            .map(|household| household.head_name)
            .unwrap_or_else(|| pending.household_id.clone());
        let member = match &pending.target {
            fieldsync_model::register::FieldTarget::Household => String::new(),
            fieldsync_model::register::FieldTarget::Member(member_id) => {
                format!(" 成员 member {member_id}")
            }
        };
        println!(
            "待审核 conflict: {head}户{member} {}: {} (waiting for the township supervisor; \
             recorded {}, edited on {})",
            pending.field,
            fieldsync_model::register::PendingConflict::WAITING_ZH,
            fieldsync_model::time_util::beijing_minutes(pending.recorded_at),
            if pending.device_id == status.device_id {
                "this device"
            } else {
                "another device"
            }
        );
    }
    Ok(())
}

fn print_tasks(client: &Client) -> Result<(), ClientError> {
    print!("{}", tasks_text(&client.tasks()?));
    Ok(())
}

/// The `tasks` listing: each returned visit with its reasons (Chinese label and the field
/// it points at), the supervisor's note, the deadline and how to fix it.
fn tasks_text(tasks: &[fieldsync_client::Task]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    if tasks.is_empty() {
        text.push_str("没有待整改的走访 no returned visits to fix\n");
        return text;
    }
    let _ = writeln!(
        text,
        "待整改 {} 条 ({} returned visits to fix)",
        tasks.len(),
        tasks.len()
    );
    for task in tasks {
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "走访 visit {} 第{}版 (revision {}) — 户 {} {}",
            task.visit_id,
            task.revision,
            task.revision,
            task.household_id,
            task.head_name.as_deref().unwrap_or("")
        );
        for reason in &task.reasons {
            let _ = writeln!(
                text,
                "  原因 reason: {} ({}) 字段 field: {} ({})",
                reason.label_zh, reason.code, reason.field_label_zh, reason.field
            );
        }
        if !task.note.is_empty() {
            let _ = writeln!(text, "  说明 note:   {}", task.note);
        }
        if !task.deadline.is_empty() {
            let _ = writeln!(text, "  期限 due:    {}", task.deadline);
        }
        if !task.reviewer_name.is_empty() {
            let _ = writeln!(text, "  审核人 by:   {}", task.reviewer_name);
        }
        let _ = writeln!(
            text,
            "  整改 fix:    fieldsync visit show {id}; fieldsync visit fix {id} --situation \"...\" [--check ITEM=ok|fail:NOTE] [--replace-photo 1=FILE] [--remove-photo 2] [--photo FILE]",
            id = task.visit_id
        );
    }
    text
}

#[cfg(test)]
mod tasks_text_tests {
    use super::*;
    use fieldsync_client::{Task, TaskReason};

    #[test]
    fn the_task_listing_shows_reasons_fields_note_and_deadline_in_chinese() {
        let task = Task {
            visit_id: "v-1".into(),
            revision: 1,
            household_id: "h-1".into(),
            head_name: Some("王大山".into()),
            reasons: vec![TaskReason {
                code: "content_too_short".into(),
                field: "observed_situation".into(),
                label_zh: "走访内容过于简单".into(),
                field_label_zh: "生产生活情况".into(),
            }],
            note: "请补充收入变化".into(),
            deadline: "2026-12-10".into(),
            reviewer_name: "周审核".into(),
            decided_at: None,
        };
        let text = tasks_text(std::slice::from_ref(&task));
        for part in [
            "待整改 1 条",
            "王大山",
            "原因 reason: 走访内容过于简单 (content_too_short) 字段 field: 生产生活情况 (observed_situation)",
            "说明 note:   请补充收入变化",
            "期限 due:    2026-12-10",
            "审核人 by:   周审核",
            "fieldsync visit fix v-1",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
        assert!(tasks_text(&[]).contains("没有待整改的走访"));
    }
}

#[cfg(test)]
mod income_tests {
    use super::*;

    fn row(id: &str, quarter: u32, wage_fen: i64, state: IncomeState) -> LocalIncome {
        let components = IncomeComponents {
            wage_fen,
            ..IncomeComponents::default()
        };
        LocalIncome {
            registration: IncomeRegistration::new(
                id.into(),
                "h-1".into(),
                2026,
                quarter,
                2,
                components,
            )
            .unwrap_or_else(|error| panic!("{error}")),
            state,
            rejection: (state == IncomeState::Rejected)
                .then(|| ("household_out_of_scope".to_owned(), "不是结对户".to_owned())),
            recorded_at: None,
        }
    }

    #[test]
    fn yuan_flags_are_read_as_exact_fen_and_bad_ones_are_refused() {
        let cli = Cli::try_parse_from([
            "fieldsync",
            "income",
            "register",
            "h-1",
            "--year",
            "2026",
            "--quarter",
            "3",
            "--wages",
            "3200.5",
            "--transfer",
            "0.01",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
        let Command::Income(IncomeCommand::Register(args)) = cli.command else {
            panic!("not income register: {:?}", cli.command);
        };
        assert_eq!(
            (args.wages, args.transfer, args.production),
            (320_050, 1, 0)
        );
        for bad in ["1.234", "-1", "abc"] {
            let error = Cli::try_parse_from([
                "fieldsync",
                "income",
                "register",
                "h-1",
                "--year",
                "2026",
                "--quarter",
                "3",
                "--wages",
                bad,
            ])
            .expect_err(bad);
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_income_listing_marks_corrected_quarters_and_refusals() {
        let text = income_list_text(
            &[
                row("r-1", 1, 100_000, IncomeState::Sent),
                row("r-2", 1, 120_000, IncomeState::Unsent),
                row("r-3", 2, 50, IncomeState::Rejected),
            ],
            // The server holds this phone's r-1: listed once, in the phone's own section.
            &[row("r-1", 1, 100_000, IncomeState::Sent).registration],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].contains("2026Q1") && lines[1].contains("已更正"),
            "{text}"
        );
        assert!(
            lines[1].contains("1,000.00") && lines[1].contains("500.00"),
            "{text}"
        );
        assert!(
            lines[2].contains("待上传") && !lines[2].contains("已更正"),
            "{text}"
        );
        assert!(
            lines[3].contains("被拒收") && lines[3].contains("household_out_of_scope"),
            "{text}"
        );
        assert!(income_list_text(&[], &[]).contains("本机暂无收入登记"));
    }

    #[test]
    fn the_income_listing_shows_quarters_another_device_registered() {
        let other_phone_q3 = row("r-9", 3, 90_000, IncomeState::Sent).registration;
        let other_phone_q4 = row("r-8", 4, 70_000, IncomeState::Sent).registration;
        let text = income_list_text(
            &[row("r-4", 4, 75_000, IncomeState::Unsent)],
            &[other_phone_q3, other_phone_q4],
        );
        let lines: Vec<&str> = text.lines().collect();
        let section = lines
            .iter()
            .position(|line| line.contains("其他设备登记"))
            .unwrap_or_else(|| panic!("no section for other devices: {text}"));
        assert!(section > 1, "this phone's rows come first: {text}");
        let q3 = lines
            .iter()
            .find(|line| line.contains("2026Q3"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(q3.contains("900.00") && q3.contains("服务器已有"), "{text}");
        assert!(!q3.contains("更正"), "{text}");
        let q4_on_server = lines[section..]
            .iter()
            .find(|line| line.contains("2026Q4"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(q4_on_server.contains("本机更正待上传"), "{text}");
        // This phone's sent Q3 that another device's later registration replaced.
        let text = income_list_text(
            &[row("r-5", 3, 80_000, IncomeState::Sent)],
            &[row("r-9", 3, 90_000, IncomeState::Sent).registration],
        );
        let own = text
            .lines()
            .find(|line| line.contains("800.00"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(own.contains("已被其他设备的登记替换"), "{text}");
    }
}

#[cfg(test)]
mod visit_form_tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("fieldsync").chain(args.iter().copied()))
            .unwrap_or_else(|error| panic!("{error}"))
            .command
    }

    #[test]
    fn the_whole_form_is_read_from_the_flags() {
        let Command::Visit(VisitCommand::New(args)) = parse(&[
            "visit",
            "new",
            "hh-1",
            "--mode",
            "phone",
            "--exception-reason",
            "working-away",
            "--type",
            "policy-briefing",
            "--situation",
            "户主外出务工，电话联系。",
            "--plan-progress",
            "鸡苗已发放",
            "--problems",
            "缺劳力",
            "--actions",
            "联系就业",
            "--needs",
            "技能培训",
            "--policy",
            "医疗保障",
            "--policy",
            "雨露计划",
            "--check",
            "food=ok",
            "--check",
            "housing=fail:危房C级",
            "--check",
            "饮水=达标",
            "--duration-min",
            "40",
        ]) else {
            panic!("not visit new");
        };
        let now = time::macros::datetime!(2026-03-05 10:00 UTC);
        let mut visit = NewVisit::new(args.household.clone(), args.mode.into(), now, now);
        apply_form_args(&args.form, form_fields_of!(visit), now);
        assert_eq!(visit.mode, VisitMode::Phone);
        assert_eq!(
            visit.exception_reason,
            Some(VisitExceptionReason::WorkingAway)
        );
        assert_eq!(visit.visit_type, VisitType::PolicyBriefing);
        assert_eq!(
            (
                visit.plan_progress.as_str(),
                visit.problems.as_str(),
                visit.actions.as_str(),
                visit.needs.as_str()
            ),
            ("鸡苗已发放", "缺劳力", "联系就业", "技能培训")
        );
        assert_eq!(visit.policies_explained, vec!["医疗保障", "雨露计划"]);
        assert_eq!(visit.wellbeing.food, CheckResult::Pass);
        assert_eq!(visit.wellbeing.housing_safety, CheckResult::Fail);
        assert_eq!(visit.wellbeing.drinking_water, CheckResult::Pass);
        assert_eq!(visit.wellbeing.clothing, CheckResult::NotChecked);
        assert_eq!(visit.wellbeing.note, "住房安全有保障：危房C级");
        assert_eq!(visit.checkout_at - visit.checkin_at, Duration::minutes(40));
    }

    #[test]
    fn bad_checks_and_times_are_refused_by_the_parser() {
        for bad in ["food", "roof=ok", "food=maybe"] {
            let error = Cli::try_parse_from([
                "fieldsync",
                "visit",
                "new",
                "hh-1",
                "--mode",
                "in-person",
                "--check",
                bad,
            ])
            .expect_err(bad);
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        }
        assert!(beijing_time_arg("2026-03-05 09:30").is_ok());
        assert!(beijing_time_arg("09:30").is_err());
    }

    #[test]
    fn fix_names_photos_by_number_or_id() {
        let Command::Visit(VisitCommand::Fix(args)) = parse(&[
            "visit",
            "fix",
            "v-1",
            "--remove-photo",
            "2",
            "--replace-photo",
            "1=new.jpg",
            "--check",
            "medical=fail:未参保",
        ]) else {
            panic!("not visit fix");
        };
        assert_eq!(args.remove_photos, vec!["2"]);
        assert_eq!(args.replace_photos, vec!["1=new.jpg"]);
        let ids = vec!["aaaa-1".to_owned(), "bbbb-2".to_owned()];
        assert_eq!(resolve_photo(&ids, "2").unwrap(), "bbbb-2");
        assert_eq!(resolve_photo(&ids, "aaaa").unwrap(), "aaaa-1");
        assert!(resolve_photo(&ids, "3").is_err());
    }
}
