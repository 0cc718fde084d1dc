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
    VisitExceptionReason, VisitMode,
};
use fieldsync_model::household::Member;
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::register::FieldTarget;
use fieldsync_model::visit::GpsFix;
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
    New(NewVisitArgs),
    /// 整改 Correct a returned visit and submit it again.
    Fix(FixVisitArgs),
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

#[derive(Debug, Args)]
struct NewVisitArgs {
    /// Household id or a unique prefix of it.
    household: String,
    /// 走访方式.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// 非入户原因 (required unless --mode in-person).
    #[arg(long, value_enum)]
    exception_reason: Option<ExceptionReasonArg>,
    /// Latitude of the GPS fix (WGS-84).
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude of the GPS fix (WGS-84).
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// Horizontal accuracy of the fix in metres.
    #[arg(long, default_value_t = 10.0)]
    accuracy: f64,
    /// 定位来源.
    #[arg(long, value_enum, default_value = "gps")]
    provider: ProviderArg,
    /// The OS reported a mock location.
    #[arg(long)]
    mock: bool,
    /// Photo file (repeatable).
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
    /// 生产生活情况.
    #[arg(long)]
    situation: String,
    /// 帮扶计划实施情况.
    #[arg(long, default_value = "")]
    plan_progress: String,
    /// 存在问题.
    #[arg(long, default_value = "")]
    problems: String,
    /// 采取措施.
    #[arg(long, default_value = "")]
    actions: String,
    /// 群众需求.
    #[arg(long, default_value = "")]
    needs: String,
    /// Minutes spent at the household: check-in = now − duration, check-out = now.
    #[arg(long, default_value_t = 30)]
    duration_min: i64,
}

#[derive(Debug, Args)]
struct FixVisitArgs {
    /// Visit id or a unique prefix of it.
    visit_id: String,
    /// New 生产生活情况 text.
    #[arg(long)]
    situation: Option<String>,
    /// Additional photo (repeatable).
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
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
        Command::Visit(VisitCommand::New(args)) => record_visit(&client, args)?,
        Command::Visit(VisitCommand::Fix(args)) => fix_visit(&client, args)?,
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
                    Err(ClientError::NotFound(_)) => text.trim().to_owned(),
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

fn record_visit(client: &Client, args: NewVisitArgs) -> Result<(), ClientError> {
    let household_id = match client.resolve_household_id(&args.household) {
        Ok(household_id) => household_id,
        // Before the first sync the replica is empty; a cadre who knows the full id may
        // still record offline, and the server checks the pairing when it arrives.
        Err(ClientError::NotFound(_)) => {
            println!(
                "提示 note: {:?} 不在本机帮扶对象中, 按原样使用 (not in the local household list; using it as given)",
                args.household
            );
            args.household.trim().to_owned()
        }
        Err(error) => return Err(error),
    };
    if args.duration_min < 0 {
        return Err(ClientError::Invalid {
            field: "duration_min".into(),
            message: "must not be negative".into(),
        });
    }
    let now = OffsetDateTime::now_utc();
    let gps = match (args.lat, args.lon) {
        (Some(lat), Some(lon)) => Some(GpsFix {
            lat,
            lon,
            crs: Crs::Wgs84,
            accuracy_m: args.accuracy,
            provider: Some(args.provider.into()),
            is_mock: args.mock,
            fix_time: Some(now),
        }),
        _ => None,
    };
    let mode: VisitMode = args.mode.into();
    let new_visit = NewVisit {
        exception_reason: args.exception_reason.map(Into::into),
        observed_situation: args.situation,
        plan_progress: args.plan_progress,
        problems: args.problems,
        actions: args.actions,
        needs: args.needs,
        gps,
        photo_paths: args.photos,
        ..NewVisit::new(
            household_id.clone(),
            mode,
            now - Duration::minutes(args.duration_min),
            now,
        )
    };
    let photo_count = new_visit.photo_paths.len();
    let has_gps = new_visit.gps.is_some();
    let visit_id = client.record_visit(new_visit)?;
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

fn fix_visit(client: &Client, args: FixVisitArgs) -> Result<(), ClientError> {
    let visit_id = client.resolve_visit_id(&args.visit_id)?;
    let situation = args.situation;
    let revision = client.resubmit_visit_with_photos(&visit_id, &args.photos, |visit| {
        if let Some(situation) = situation {
            visit.observed_situation = situation;
        }
    })?;
    println!("已重新提交 resubmitted: {visit_id} 第{revision}版 (revision {revision})");
    println!("运行 `fieldsync sync` 上传 (run `fieldsync sync` to send it)");
    Ok(())
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
            "  整改 fix:    fieldsync visit fix {} --situation \"...\" [--photo FILE]",
            task.visit_id
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
