//! `fieldsync`: the field-app stand-in. Each subcommand is one screen of the phone app,
//! driven through the `fieldsync-client` library exactly as the real app would drive it.
//! Output is for people, with Chinese labels next to the English ones.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fieldsync_client::{Client, ClientError, NewVisit, SyncReport, VisitState, visit_mode_label};
use fieldsync_model::CodeList;
use fieldsync_model::codes::{
    Crs, Disability, Health, LabourCapacity, LocationProvider, Relation, Schooling, Sex,
    VisitExceptionReason, VisitMode,
};
use fieldsync_model::household::Member;
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
    },
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
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let client = Client::open(&cli.data_dir, &cli.server)?;
    match cli.command {
        Command::Login { username, password } => {
            let info = client.login(&username, &password).await?;
            println!(
                "登录成功 logged in: {} ({})",
                info.display_name, info.username
            );
            if let Some(role) = info.role {
                println!("角色 role:      {} {}", role.label_zh(), role.as_str());
            }
            println!("设备 device:    {}", info.device_id);
            println!("下一步 next: `fieldsync sync` 下载帮扶对象 to download your households");
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
        Command::Status => print_status(&client)?,
        Command::Tasks => print_tasks(&client)?,
    }
    Ok(())
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
    Ok(())
}

fn print_tasks(client: &Client) -> Result<(), ClientError> {
    let tasks = client.tasks()?;
    if tasks.is_empty() {
        println!("没有待整改的走访 no returned visits to fix");
        return Ok(());
    }
    println!(
        "待整改 {} 条 ({} returned visits to fix)",
        tasks.len(),
        tasks.len()
    );
    for task in &tasks {
        println!();
        println!(
            "走访 visit {} 第{}版 (revision {}) — 户 {} {}",
            task.visit_id,
            task.revision,
            task.revision,
            task.household_id,
            task.head_name.as_deref().unwrap_or("")
        );
        for reason in &task.reasons {
            println!(
                "  原因 reason: {} ({}) 字段 field: {}",
                reason.label_zh, reason.code, reason.field
            );
        }
        if !task.note.is_empty() {
            println!("  说明 note:   {}", task.note);
        }
        if !task.deadline.is_empty() {
            println!("  期限 due:    {}", task.deadline);
        }
        if !task.reviewer_name.is_empty() {
            println!("  审核人 by:   {}", task.reviewer_name);
        }
        println!(
            "  整改 fix:    fieldsync visit fix {} --situation \"...\" [--photo FILE]",
            task.visit_id
        );
    }
    Ok(())
}
